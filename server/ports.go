package server

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
)

// This file holds what the two ports do besides their protocols: they are
// bound before anything else happens (so a busy port changes nothing on
// disk), and each answers a client that dialled the wrong one with the
// address of the right one.

// listenBoth binds the gRPC and the HTTP port, or neither.
func listenBoth(cfg Config) (grpcLis, httpLis net.Listener, err error) {
	grpcLis, err = net.Listen("tcp", cfg.GRPCAddress)
	if err != nil {
		return nil, nil, listenError("--grpc_address", cfg.GRPCAddress, err)
	}
	httpLis, err = net.Listen("tcp", cfg.HTTPAddress)
	if err != nil {
		grpcLis.Close()
		return nil, nil, listenError("--http_address", cfg.HTTPAddress, err)
	}
	return grpcLis, httpLis, nil
}

func listenError(flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s: the port is in use by another process (another sealcache?); stop it or choose another port with %s: %w", flag, addr, flag, err)
	}
	return fmt.Errorf("%s %s: %w", flag, addr, err)
}

// grpcPortHint answers HTTP/1 clients on the gRPC port. gRPC clients open a
// connection with the HTTP/2 preface ("PRI * HTTP/2.0") or a TLS
// handshake; a connection that starts with an HTTP/1 method instead is a
// browser, curl, the CLI or Bazel's HTTP cache pointed at the wrong port.
// It gets a short HTTP/1.1 answer naming the HTTP port, instead of the
// silence or protocol error gRPC would give it.
type grpcPortHint struct {
	net.Listener
	httpPort string
}

// The answer of the gRPC port to an HTTP/1 request carries these headers,
// so the CLI can tell the user which port to use instead.
const (
	SealcachePortHeader     = "Sealcache-Port"      // "grpc"
	SealcacheHTTPPortHeader = "Sealcache-Http-Port" // the HTTP port's number
)

func (l *grpcPortHint) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// The first bytes are read in the connection's own goroutine (gRPC's
	// first Read), never here: a silent client must not block Accept.
	return &sniffConn{Conn: c, r: bufio.NewReader(c), httpPort: l.httpPort}, nil
}

// sniffConn looks at a connection's first bytes on its first Read.
type sniffConn struct {
	net.Conn
	r        *bufio.Reader
	httpPort string
	once     sync.Once
	err      error // set when the connection was answered and closed
}

// http1Methods start an HTTP/1 request line.
var http1Methods = []string{"GET ", "HEAD", "POST", "PUT ", "DELE", "OPTI", "PATC", "CONN", "TRAC"}

// sniff decides once, on the first Read or Write, whether the client
// speaks HTTP/1. Writes wait for it too: gRPC sends its SETTINGS frame
// before it reads, and an HTTP/1 client must see only the answer. A gRPC
// client sends its preface without waiting, so nothing deadlocks.
func (c *sniffConn) sniff() error {
	c.once.Do(func() {
		start, err := c.r.Peek(4)
		if err != nil {
			return // let the reader see the short read or error itself
		}
		for _, m := range http1Methods {
			if string(start) == m {
				c.answerHTTP1()
				c.err = errors.New("an HTTP/1 request on the gRPC port was answered with the HTTP port's address")
				return
			}
		}
	})
	return c.err
}

func (c *sniffConn) Read(p []byte) (int, error) {
	if err := c.sniff(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (c *sniffConn) Write(p []byte) (int, error) {
	if err := c.sniff(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *sniffConn) answerHTTP1() {
	body := fmt.Sprintf("This is Sealcache's gRPC port (REAPI: --remote_cache=grpc://HOST:PORT).\n"+
		"The HTTP cache protocol, the settings page, the admin API and the sealcache CLI use the HTTP port, %s: "+
		"http://HOST:%s/ (sealcache admin --server http://HOST:%s).\n", c.httpPort, c.httpPort, c.httpPort)
	fmt.Fprintf(c.Conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n%s: grpc\r\n%s: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		SealcachePortHeader, SealcacheHTTPPortHeader, c.httpPort, len(body), body)
	c.Conn.Close()
}

// isGRPCRequest reports whether an HTTP request is a gRPC call.
func isGRPCRequest(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// answerGRPCOnHTTPPort answers a gRPC call that reached the HTTP port
// (other than the admin API's, which lives here) with a gRPC error naming
// the gRPC port. Bazel then prints, e.g., "Failed to query remote execution
// capabilities: UNIMPLEMENTED: this is Sealcache's HTTP port ...".
func answerGRPCOnHTTPPort(w http.ResponseWriter, r *http.Request, grpcPort string) {
	msg := fmt.Sprintf("this is Sealcache's HTTP port, which serves the HTTP cache protocol and the admin API; the REAPI gRPC services (%s) are on port %s: use --remote_cache=grpc://HOST:%s",
		strings.TrimPrefix(r.URL.Path, "/"), grpcPort, grpcPort)
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Grpc-Status", "12") // UNIMPLEMENTED
	w.Header().Set("Grpc-Message", grpcPercentEncode(msg))
	w.WriteHeader(http.StatusOK)
}

// grpcPercentEncode encodes a grpc-message header value as the gRPC HTTP/2
// protocol asks: printable ASCII except '%' as is, the rest as %XX.
func grpcPercentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
