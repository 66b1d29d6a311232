package s3

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/sealcache/sealcache/cas"
)

// Uploads. S3 makes an object visible only when a PutObject or a
// CompleteMultipartUpload succeeds, so a Put reads its reader to io.EOF
// before sending the request that publishes:
//
//   - An object that fits one part (size hint <= PartSize, or an unknown
//     size that turns out to) is read whole into memory, then sent with one
//     PutObject.
//   - A larger object is sent as a multipart upload of PartSize parts while
//     it is read; CompleteMultipartUpload is sent only after the reader's
//     io.EOF and only if the byte count matches the size hint.
//
// Any failure (a reader error, a wrong size, a failed request, a cancelled
// context) aborts the multipart upload, so no part is left to be billed.
// An abort that itself fails is reported in the error; a bucket lifecycle
// rule with AbortIncompleteMultipartUpload removes such leftovers.

// abortTimeout bounds the AbortMultipartUpload sent after a failure. It
// runs on a context of its own, since the upload's may be what ended.
const abortTimeout = 30 * time.Second

// maxEmptyReads is how many (0, nil) reads in a row are taken as a reader
// that makes no progress, as bufio does.
const maxEmptyReads = 100

// errSizeMismatch is wrapped by Put errors for a reader that yields another
// number of bytes than the size hint said.
var errSizeMismatch = errors.New("upload size differs from the announced size")

// Put stores the bytes of r under key; see cas.BlobStore.
func (s *Store) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	name, err := s.layout.ObjectName(key)
	if err != nil {
		return err
	}
	if size < cas.SizeUnknown {
		return fmt.Errorf("Put(%s): size %d is neither a byte count nor cas.SizeUnknown", key, size)
	}
	if limit := s.maxObjectSize(); size > limit {
		return fmt.Errorf("%s has %d bytes, more than the %d an S3 object of %d parts of %d bytes can hold: %w",
			key, size, limit, MaxParts, s.cfg.PartSize, cas.ErrTooLarge)
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	up := &upload{s: s, key: key, name: name, size: size, r: r}
	if size != cas.SizeUnknown && size <= s.cfg.PartSize {
		return up.single(ctx)
	}
	return up.stream(ctx)
}

func (s *Store) maxObjectSize() int64 { return MaxParts * s.cfg.PartSize }

// upload is one Put under way.
type upload struct {
	s    *Store
	key  cas.Key
	name string
	size int64 // the size hint, or cas.SizeUnknown
	r    io.Reader
	read int64 // bytes read from r so far
}

// single reads an object of known size that fits one part, checks that the
// reader ends there, and sends it with one PutObject.
func (u *upload) single(ctx context.Context) error {
	if err := u.s.memory.reserve(ctx, u.size); err != nil {
		return err
	}
	defer u.s.memory.release(u.size)
	buf := make([]byte, u.size)
	n, eof, err := u.fill(buf)
	if err != nil {
		return err
	}
	if eof && int64(n) < u.size {
		return u.mismatch()
	}
	if err := u.expectEOF(); err != nil {
		return err
	}
	return u.putObject(ctx, buf)
}

// stream sends an object of unknown or more than one part's size: the first
// part decides between one PutObject (the reader ended within it) and a
// multipart upload.
func (u *upload) stream(ctx context.Context) error {
	bufs := newPartBuffers(u.s.memory, u.s.cfg.PartConcurrency)
	defer bufs.releaseAll()
	first, err := bufs.get(ctx)
	if err != nil {
		return err
	}
	n, eof, err := u.fill(first)
	if err != nil || eof {
		defer bufs.put(first)
	}
	if err != nil {
		return err
	}
	if eof {
		if u.size != cas.SizeUnknown {
			return u.mismatch() // a known size here is more than one part
		}
		return u.putObject(ctx, first[:n])
	}
	return u.multipart(ctx, bufs, first)
}

// fill reads from r until buf is full, r ends (eof) or r fails. It stops
// with an error as soon as more bytes arrive than the size hint allows.
func (u *upload) fill(buf []byte) (n int, eof bool, err error) {
	empty := 0
	for n < len(buf) {
		m, err := u.r.Read(buf[n:])
		n += m
		u.read += int64(m)
		if u.size != cas.SizeUnknown && u.read > u.size {
			return n, false, u.mismatch()
		}
		switch {
		case err == io.EOF:
			return n, true, nil
		case err != nil:
			return n, false, fmt.Errorf("reading the upload of %s after %d bytes: %w", u.key, u.read, err)
		case m == 0:
			if empty++; empty == maxEmptyReads {
				return n, false, fmt.Errorf("reading the upload of %s: %w", u.key, io.ErrNoProgress)
			}
		default:
			empty = 0
		}
	}
	return n, false, nil
}

// expectEOF reads r past the size hint: it must end there, with io.EOF and
// no error, since wrappers report a bad digest or a lost fence as an error
// at the end of the stream.
func (u *upload) expectEOF() error {
	var probe [1]byte
	n, eof, err := u.fill(probe[:])
	switch {
	case err != nil:
		return err
	case n > 0:
		return u.mismatch() // unreachable while fill checks the hint
	case !eof:
		return fmt.Errorf("reading the upload of %s: %w", u.key, io.ErrNoProgress)
	}
	return nil
}

func (u *upload) mismatch() error {
	if u.read > u.size {
		return fmt.Errorf("upload of %s: more than the %d bytes announced arrived: %w", u.key, u.size, errSizeMismatch)
	}
	return fmt.Errorf("upload of %s: %d bytes arrived, not the %d announced: %w", u.key, u.read, u.size, errSizeMismatch)
}

// putObject publishes data with one request.
func (u *upload) putObject(ctx context.Context, data []byte) error {
	if err := u.s.check(ctx); err != nil {
		return err
	}
	_, err := u.s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(u.s.bucket),
		Key:           aws.String(u.name),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		return u.s.failure(opPut, u.name, err)
	}
	return nil
}

// multipart sends first and the rest of r as parts while reading, then
// completes the upload; on any failure it aborts it.
func (u *upload) multipart(ctx context.Context, bufs *partBuffers, first []byte) (err error) {
	created, err := u.s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(u.s.bucket),
		Key:               aws.String(u.name),
		ChecksumAlgorithm: u.s.partChecksum,
	})
	if err != nil {
		bufs.put(first)
		return u.s.failure(opCreateMultipart, u.name, err)
	}
	id := aws.ToString(created.UploadId)
	defer func() {
		if err != nil {
			err = u.abort(ctx, id, err)
		}
	}()

	parts, err := u.sendParts(ctx, bufs, id, first)
	if err != nil {
		return err
	}
	if err := u.s.check(ctx); err != nil {
		return err
	}
	_, err = u.s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(u.s.bucket),
		Key:             aws.String(u.name),
		UploadId:        aws.String(id),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return u.s.failure(opCompleteMultipart, u.name, err)
	}
	return nil
}

// sendParts sends first, then reads and sends the rest of r, up to
// PartConcurrency parts at once, until r ends. It returns the parts in
// order once every send has finished, or the failure that stopped it.
func (u *upload) sendParts(ctx context.Context, bufs *partBuffers, id string, first []byte) ([]types.CompletedPart, error) {
	sendCtx, stopSends := context.WithCancel(ctx)
	defer stopSends()
	g, gctx := errgroup.WithContext(sendCtx)
	var (
		mu    sync.Mutex
		parts []types.CompletedPart
	)
	send := func(number int32, buf []byte, n int) {
		g.Go(func() error {
			defer bufs.put(buf)
			part, err := u.sendPart(gctx, id, number, buf[:n])
			if err != nil {
				return err
			}
			mu.Lock()
			parts = append(parts, part)
			mu.Unlock()
			return nil
		})
	}

	readErr := u.readParts(gctx, bufs, first, send)
	if readErr != nil {
		stopSends() // the upload is lost: send no more of it
	}
	// Wait for every send even after a failure: each holds a buffer, and
	// the abort must come after the last part.
	sendErr := g.Wait()
	switch {
	case sendErr != nil && (readErr == nil || errors.Is(readErr, context.Canceled) && ctx.Err() == nil):
		return nil, sendErr // a send failed first, which stopped the reading
	case readErr != nil:
		return nil, readErr
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int {
		return cmp.Compare(aws.ToInt32(a.PartNumber), aws.ToInt32(b.PartNumber))
	})
	return parts, nil
}

// readParts hands first and every further part of r to send, in order,
// and returns once r has ended cleanly with the byte count the size hint
// announced, or something failed. Every buffer it gets goes either to
// send or back to bufs.
func (u *upload) readParts(ctx context.Context, bufs *partBuffers, first []byte, send func(int32, []byte, int)) error {
	buf, n, last := first, len(first), false
	for number := int32(1); ; number++ {
		if number > MaxParts {
			bufs.put(buf)
			return fmt.Errorf("%s has more than the %d bytes an S3 object of %d parts of %d bytes can hold: %w",
				u.key, u.s.maxObjectSize(), MaxParts, u.s.cfg.PartSize, cas.ErrTooLarge)
		}
		send(number, buf, n)
		if last {
			return nil
		}
		if u.size != cas.SizeUnknown && u.read == u.size {
			// Every announced byte is here: the reader must end now.
			return u.expectEOF()
		}
		var err error
		if buf, err = bufs.get(ctx); err != nil {
			return err
		}
		var eof bool
		if n, eof, err = u.fill(buf); err != nil {
			bufs.put(buf)
			return err
		}
		if eof {
			if u.size != cas.SizeUnknown && u.read != u.size {
				bufs.put(buf)
				return u.mismatch()
			}
			if n == 0 {
				bufs.put(buf)
				return nil
			}
			last = true
		}
	}
}

// sendPart uploads one part and returns what CompleteMultipartUpload needs
// of it.
func (u *upload) sendPart(ctx context.Context, id string, number int32, data []byte) (types.CompletedPart, error) {
	out, err := u.s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            aws.String(u.s.bucket),
		Key:               aws.String(u.name),
		UploadId:          aws.String(id),
		PartNumber:        aws.Int32(number),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ChecksumAlgorithm: u.s.partChecksum,
	})
	if err != nil {
		return types.CompletedPart{}, u.s.failure(opUploadPart, u.name, err)
	}
	return types.CompletedPart{
		PartNumber:     aws.Int32(number),
		ETag:           out.ETag,
		ChecksumCRC32:  out.ChecksumCRC32,
		ChecksumCRC32C: out.ChecksumCRC32C,
		ChecksumSHA1:   out.ChecksumSHA1,
		ChecksumSHA256: out.ChecksumSHA256,
	}, nil
}

// abort removes the multipart upload after cause, on a context that
// outlives a cancelled upload, and returns cause (with the abort's own
// failure, if any, appended).
func (u *upload) abort(ctx context.Context, id string, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := u.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(u.s.bucket),
		Key:      aws.String(u.name),
		UploadId: aws.String(id),
	})
	if err != nil && !isAPIError(err, codeNoSuchUpload) {
		return fmt.Errorf("%w (and aborting multipart upload %s failed too, leaving its parts in the bucket until a lifecycle rule with AbortIncompleteMultipartUpload removes them: %v)",
			cause, id, u.s.failure(opAbortMultipart, u.name, err))
	}
	return cause
}
