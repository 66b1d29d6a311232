package server

import "net/http"

func (s *Server) registerAdmin(mux *http.ServeMux) {}

func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	http.NotFound(w, r)
}
