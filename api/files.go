package api

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/raftvip/raftvip/store"
)

// DefaultMaxFileSize is the default limit on one uploaded file.
const DefaultMaxFileSize = 64 << 30

// HeaderChecksum carries the client's hex SHA-256 of an upload; RFC 9530's
// Content-Digest (sha-256=:base64:) is accepted too.
const HeaderChecksum = "X-Checksum-Sha256"

func (s *Server) fileRoutes() {
	s.mux.HandleFunc("/api/v1/files/{ns}", methods(map[string]http.HandlerFunc{http.MethodGet: s.listFiles}))
	s.mux.HandleFunc("/api/v1/files/{ns}/{path...}", methods(map[string]http.HandlerFunc{
		http.MethodGet:    s.getFile,
		http.MethodPut:    s.putFile,
		http.MethodDelete: s.deleteFile,
	}))
}

// clientDigest reads the SHA-256 the client announced, if any, in
// X-Checksum-Sha256 or RFC 9530's Content-Digest (sha-256=:base64:). Both
// may be given only if they agree.
func clientDigest(r *http.Request) (string, error) {
	var hexSum, digestSum string
	if v := strings.TrimSpace(r.Header.Get(HeaderChecksum)); v != "" {
		v = strings.ToLower(v)
		if err := store.ValidSHA256(v); err != nil {
			return "", fmt.Errorf("%w: %s must be 64 hex digits", store.ErrInvalid, HeaderChecksum)
		}
		hexSum = v
	}
	if cd := r.Header.Get("Content-Digest"); cd != "" {
		for _, part := range strings.Split(cd, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || strings.TrimSpace(k) == "" {
				return "", fmt.Errorf("%w: Content-Digest %q is not a list of algorithm=:base64: items", store.ErrInvalid, cd)
			}
			if strings.ToLower(strings.TrimSpace(k)) != "sha-256" {
				continue // another algorithm: not ours to check
			}
			b64, ok := strings.CutPrefix(strings.TrimSpace(v), ":")
			if ok {
				b64, ok = strings.CutSuffix(b64, ":")
			}
			raw, err := base64.StdEncoding.DecodeString(b64)
			if !ok || err != nil || len(raw) != 32 {
				return "", fmt.Errorf("%w: Content-Digest sha-256 must be the base64 of 32 bytes between colons", store.ErrInvalid)
			}
			if digestSum != "" && digestSum != hex.EncodeToString(raw) {
				return "", fmt.Errorf("%w: Content-Digest names two different sha-256 values", store.ErrInvalid)
			}
			digestSum = hex.EncodeToString(raw)
		}
	}
	if hexSum != "" && digestSum != "" && hexSum != digestSum {
		return "", fmt.Errorf("%w: %s and Content-Digest disagree", store.ErrInvalid, HeaderChecksum)
	}
	if hexSum != "" {
		return hexSum, nil
	}
	return digestSum, nil
}

// putFile stores an upload: the body streams into this node's blob store
// (verified against the client's digest), the blob is copied to a quorum,
// and only then is the file record committed, which makes it visible.
func (s *Server) putFile(w http.ResponseWriter, r *http.Request) {
	ns, p := r.PathValue("ns"), r.PathValue("path")
	if _, err := store.CleanFilePath(ns, p); err != nil {
		fail(w, err)
		return
	}
	want, err := clientDigest(r)
	if err != nil {
		fail(w, err)
		return
	}
	ctype := r.Header.Get("Content-Type")
	if ctype != "" {
		if _, _, err := mime.ParseMediaType(ctype); err != nil || len(ctype) > 255 {
			fail(w, fmt.Errorf("%w: Content-Type %q", store.ErrInvalid, ctype))
			return
		}
	}
	if r.ContentLength > s.maxFile {
		fail(w, fmt.Errorf("%w: the file is %d bytes, the limit is %d", errTooLarge, r.ContentLength, s.maxFile))
		return
	}
	ifRev, err := parseRev(r)
	if err != nil {
		fail(w, err)
		return
	}
	if !s.routeReader(w, r, r.Body, r.ContentLength) {
		return
	}
	// A precondition that already fails is refused before a byte of the
	// body is stored or copied (the commit checks it again).
	if ifRev != nil {
		var have uint64
		if f, err := s.node.Store().GetFile(ns, p); err == nil {
			have = f.Rev
		} else if !errors.Is(err, store.ErrNotFound) {
			fail(w, err)
			return
		}
		if have != *ifRev {
			fail(w, fmt.Errorf("%w: %s/%s is at revision %d, not %d", store.ErrConflict, ns, p, have, *ifRev))
			return
		}
	}
	// Store the upload here and stream it to the other voters at once.
	sha, size, quorum, err := s.receiveBlob(r, want)
	if err != nil {
		if errors.Is(err, store.ErrTooLarge) {
			err = fmt.Errorf("%w: the limit is %d bytes", errTooLarge, s.maxFile)
		}
		fail(w, err)
		return
	}
	if !quorum {
		// Some streams failed: copy from this node's blob to the others.
		if err := s.node.ReplicateBlob(r.Context(), sha, size); err != nil {
			fail(w, fmt.Errorf("the file was not stored: %w", err))
			return
		}
	}
	cmd := &store.Command{Op: store.OpFilePut, File: &store.FileRef{Namespace: ns, Path: p, SHA256: sha, Size: size, ContentType: ctype}, IfRev: ifRev}
	if _, err := s.apply(r.Context(), cmd); err != nil {
		fail(w, err)
		return
	}
	f, err := s.node.Store().GetFile(ns, p)
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(f.SHA256))
	writeJSON(w, http.StatusOK, f)
}

// receiveBlob stores the request's body as a blob on this node while it is
// streamed to the other voters, and reports whether a quorum holds it. A
// blob this node already has (the client announced its digest) is only
// verified here and copied to the voters that lack it.
func (s *Server) receiveBlob(r *http.Request, want string) (sha string, size int64, quorum bool, err error) {
	if want != "" && s.node.Store().HasBlob(want) {
		sha, size, err = s.node.Store().PutBlob(r.Body, want, s.maxFile)
		return sha, size, false, err
	}
	u, err := s.node.Store().NewUpload(s.maxFile)
	if err != nil {
		return "", 0, false, err
	}
	fan, err := s.node.FanoutBlob(u, r.ContentLength)
	if err != nil {
		u.Abort(err)
		return "", 0, false, err
	}
	if _, err = io.Copy(u, r.Body); err != nil {
		u.Abort(err)
		fan.Finish("", false)
		return "", 0, false, err
	}
	if r.ContentLength >= 0 && u.Offset() != r.ContentLength {
		err = fmt.Errorf("%w: got %d bytes, Content-Length said %d", store.ErrInvalid, u.Offset(), r.ContentLength)
		u.Abort(err)
		fan.Finish("", false)
		return "", 0, false, err
	}
	sha, size, err = u.Commit(want)
	return sha, size, fan.Finish(sha, err == nil), err
}

var (
	errTooLarge         = errors.New("too large")
	errNotActiveAnymore = errors.New("not active any more")
)

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) {
	ns, p := r.PathValue("ns"), r.PathValue("path")
	if _, err := store.CleanFilePath(ns, p); err != nil {
		fail(w, err)
		return
	}
	if !s.readHere(w, r) {
		return
	}
	f, err := s.node.Store().GetFile(ns, p)
	if err != nil {
		fail(w, err)
		return
	}
	if !s.node.Store().HasBlob(f.SHA256) {
		// Committed but not yet copied here: fetch it now.
		if err := s.node.FetchBlob(r.Context(), f.SHA256); err != nil {
			writeError(w, http.StatusServiceUnavailable, "blob_missing", err.Error())
			return
		}
	}
	blob, err := s.node.Store().OpenBlob(f.SHA256)
	if err != nil {
		fail(w, err)
		return
	}
	defer blob.Close()
	w.Header().Set("ETag", strconv.Quote(f.SHA256))
	w.Header().Set("X-Checksum-Sha256", f.SHA256)
	if f.ContentType != "" {
		w.Header().Set("Content-Type", f.ContentType)
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if v, ok := r.Header["Range"]; ok {
		if err := checkRange(v, f.Size); err != nil {
			if errors.Is(err, errUnsatisfiable) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", f.Size))
				writeError(w, http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable", err.Error())
				return
			}
			fail(w, err)
			return
		}
	}
	http.ServeContent(w, r, "", f.Updated, blob)
}

// maxRanges bounds a multi-range request (each part costs a header and a
// seek).
const maxRanges = 16

var errUnsatisfiable = errors.New("no part of the range is inside the file")

// checkRange validates a Range header (RFC 9110, 14.1.2) before
// http.ServeContent sees it, so that a malformed one gets a 400 JSON answer
// and one outside the file a 416 with "bytes */size", where ServeContent
// answers in plain text (and "bytes=-0" with "bytes 11-10/11").
func checkRange(values []string, size int64) error {
	bad := func(why string) error { return fmt.Errorf("%w: Range %q: %s", store.ErrInvalid, values, why) }
	if len(values) != 1 {
		return bad("give one Range header")
	}
	specs, ok := strings.CutPrefix(strings.TrimSpace(values[0]), "bytes=")
	if !ok {
		return bad(`only "bytes=" ranges are served`)
	}
	parts := strings.Split(specs, ",")
	if len(parts) > maxRanges {
		return bad(fmt.Sprintf("at most %d ranges", maxRanges))
	}
	num := func(s string) (int64, bool) { // digits only: no sign, no space
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && n >= 0 && strings.TrimLeft(s, "0123456789") == ""
	}
	satisfiable := false
	for _, part := range parts {
		first, last, ok := strings.Cut(strings.TrimSpace(part), "-")
		if !ok || (first == "" && last == "") {
			return bad("each range is first-last, first- or -suffix")
		}
		switch {
		case first == "":
			n, ok := num(last)
			if !ok {
				return bad("a suffix length must be a number")
			}
			if n > 0 && size > 0 {
				satisfiable = true
			}
		default:
			a, ok := num(first)
			if !ok {
				return bad("a first position must be a number")
			}
			if last != "" {
				b, ok := num(last)
				if !ok || b < a {
					return bad("a last position must be a number no smaller than the first")
				}
			}
			if a < size {
				satisfiable = true
			}
		}
	}
	if !satisfiable {
		return fmt.Errorf("%w: Range %q, file of %d bytes", errUnsatisfiable, values[0], size)
	}
	return nil
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) {
	ns, p := r.PathValue("ns"), r.PathValue("path")
	cmd := &store.Command{Op: store.OpFileDelete, File: &store.FileRef{Namespace: ns, Path: p}}
	var err error
	if cmd.IfRev, err = parseRev(r); err != nil {
		fail(w, err)
		return
	}
	if !s.validateAndRoute(w, r, cmd, nil) {
		return
	}
	res, err := s.apply(r.Context(), cmd)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": ns + "/" + p, "rev": res.Index})
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	opts, err := listOptions(r)
	if err != nil {
		fail(w, err)
		return
	}
	if err := store.ValidNamespace(ns); err != nil {
		fail(w, err)
		return
	}
	if !s.readHere(w, r) {
		return
	}
	page, err := s.node.Store().ListFiles(ns, opts)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}
