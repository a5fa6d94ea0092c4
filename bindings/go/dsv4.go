// Package dsv4 is the Go binding of dsv4 (DeepSeek-V4 inference) over its stable C ABI, linked
// through pkg-config (an installed dsv4, or PKG_CONFIG_PATH=<build>/pkgconfig for a build tree).
//
// Errors carry the library's status and message. Session errors are read from the session's own
// slot (dsv4_session_last_error), so they are right even though a goroutine may move to another
// OS thread between the failing call and reading its message.
package dsv4

/*
#cgo pkg-config: dsv4
#include <stdlib.h>
#include <dsv4.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Error is a failed call: the C status, its name and the message.
type Error struct {
	Status  int
	Name    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Name, e.Message) }

func newError(status C.dsv4_status, message string) error {
	return &Error{Status: int(status), Name: C.GoString(C.dsv4_status_name(status)), Message: message}
}

// check turns a status into an error; the thread-local message is read while the goroutine is
// still locked to the thread that made the call.
func check(status C.dsv4_status) error {
	if status == C.DSV4_OK {
		return nil
	}
	return newError(status, C.GoString(C.dsv4_last_error()))
}

// Version is the library's version, e.g. "0.3.0".
func Version() string { return C.GoString(C.dsv4_version()) }

// Model is a loaded checkpoint, shareable by any number of sessions and goroutines.
type Model struct{ raw *C.dsv4_model }

// LoadModel loads a checkpoint directory on the CPU backend.
func LoadModel(dir string) (*Model, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	params := C.dsv4_model_default_params()
	var raw *C.dsv4_model
	if err := check(C.dsv4_model_load(cdir, &params, &raw)); err != nil {
		return nil, err
	}
	m := &Model{raw}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// Close frees the model (sessions keep what they need alive).
func (m *Model) Close() {
	if m.raw != nil {
		C.dsv4_model_free(m.raw)
		m.raw = nil
	}
}

// NVocab is the size of a logits row.
func (m *Model) NVocab() (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var v C.int64_t
	if err := check(C.dsv4_model_n_vocab(m.raw, &v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

// Session is one sequence's KV cache and position; use it from one goroutine at a time.
type Session struct {
	raw    *C.dsv4_session
	nVocab int
}

// NewSession creates a session over the model.
func NewSession(m *Model) (*Session, error) {
	n, err := m.NVocab()
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	params := C.dsv4_session_default_params()
	var raw *C.dsv4_session
	if err := check(C.dsv4_session_create(m.raw, &params, &raw)); err != nil {
		return nil, err
	}
	s := &Session{raw, n}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

// Close frees the session.
func (s *Session) Close() {
	if s.raw != nil {
		C.dsv4_session_free(s.raw)
		s.raw = nil
	}
}

func (s *Session) checked(status C.dsv4_status) error {
	if status == C.DSV4_OK {
		return nil
	}
	return newError(status, C.GoString(C.dsv4_session_last_error(s.raw)))
}

// Append appends tokens and returns the logits after the last one.
func (s *Session) Append(tokens []int32) ([]float32, error) {
	logits := make([]float32, s.nVocab)
	params := C.dsv4_append_default_params()
	params.output = C.DSV4_OUTPUT_LAST
	var tp *C.int32_t
	if len(tokens) > 0 {
		tp = (*C.int32_t)(unsafe.Pointer(&tokens[0]))
	}
	err := s.checked(C.dsv4_session_append_ex(s.raw, tp, C.size_t(len(tokens)), &params,
		(*C.float)(unsafe.Pointer(&logits[0])), C.size_t(len(logits))))
	if err != nil {
		return nil, err
	}
	return logits, nil
}

// Position is the number of tokens appended so far.
func (s *Session) Position() (int64, error) {
	var v C.int64_t
	if err := s.checked(C.dsv4_session_position(s.raw, &v)); err != nil {
		return 0, err
	}
	return int64(v), nil
}

// Tokenizer is the V4 tokenizer (byte-level BPE); immutable and shareable.
type Tokenizer struct{ raw *C.dsv4_tokenizer }

// LoadTokenizer loads tokenizer.json (a file, or a directory holding it).
func LoadTokenizer(path string) (*Tokenizer, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var raw *C.dsv4_tokenizer
	if err := check(C.dsv4_tokenizer_load(cpath, &raw)); err != nil {
		return nil, err
	}
	t := &Tokenizer{raw}
	runtime.SetFinalizer(t, (*Tokenizer).Close)
	return t, nil
}

// Close frees the tokenizer.
func (t *Tokenizer) Close() {
	if t.raw != nil {
		C.dsv4_tokenizer_free(t.raw)
		t.raw = nil
	}
}

// Encode returns the ids of text; special lets added tokens such as "<｜User｜>" match.
func (t *Tokenizer) Encode(text string, special bool) ([]int32, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var flags C.uint32_t
	if special {
		flags = C.DSV4_TOKENIZE_SPECIAL
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	var n C.size_t
	status := C.dsv4_tokenize(t.raw, ctext, C.size_t(len(text)), flags, nil, 0, &n)
	if status != C.DSV4_ERR_BUFFER_TOO_SMALL && status != C.DSV4_OK {
		return nil, check(status)
	}
	ids := make([]int32, int(n)+1)
	if err := check(C.dsv4_tokenize(t.raw, ctext, C.size_t(len(text)), flags,
		(*C.int32_t)(unsafe.Pointer(&ids[0])), C.size_t(len(ids)), &n)); err != nil {
		return nil, err
	}
	return ids[:n], nil
}

// Decode returns the text of ids.
func (t *Tokenizer) Decode(ids []int32) (string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ip *C.int32_t
	if len(ids) > 0 {
		ip = (*C.int32_t)(unsafe.Pointer(&ids[0]))
	}
	var n C.size_t
	status := C.dsv4_detokenize(t.raw, ip, C.size_t(len(ids)), 0, nil, 0, &n)
	if status != C.DSV4_ERR_BUFFER_TOO_SMALL && status != C.DSV4_OK {
		return "", check(status)
	}
	buf := make([]byte, int(n)+1)
	if err := check(C.dsv4_detokenize(t.raw, ip, C.size_t(len(ids)), 0,
		(*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n)); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Sampler chooses tokens from logits; the same seed gives the same tokens everywhere.
type Sampler struct{ raw *C.dsv4_sampler }

// NewSampler makes a sampler (temperature 0 = greedy).
func NewSampler(temperature float32, topK int32, topP float32, seed uint64) (*Sampler, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := C.dsv4_sampler_default_params()
	p.temperature = C.float(temperature)
	p.top_k = C.int32_t(topK)
	p.top_p = C.float(topP)
	p.seed = C.uint64_t(seed)
	var raw *C.dsv4_sampler
	if err := check(C.dsv4_sampler_create(&p, nil, &raw)); err != nil {
		return nil, err
	}
	s := &Sampler{raw}
	runtime.SetFinalizer(s, (*Sampler).Close)
	return s, nil
}

// Close frees the sampler.
func (s *Sampler) Close() {
	if s.raw != nil {
		C.dsv4_sampler_free(s.raw)
		s.raw = nil
	}
}

// Sample draws the next token.
func (s *Sampler) Sample(logits []float32) (int32, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var t C.int32_t
	if len(logits) == 0 {
		return -1, &Error{Status: 1, Name: "DSV4_ERR_INVALID_ARGUMENT", Message: "no logits"}
	}
	if err := check(C.dsv4_sampler_sample(s.raw, (*C.float)(unsafe.Pointer(&logits[0])),
		C.size_t(len(logits)), &t)); err != nil {
		return -1, err
	}
	return int32(t), nil
}

// Accept records a token; true when it ends generation.
func (s *Sampler) Accept(token int32) (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var stop C.int32_t
	if err := check(C.dsv4_sampler_accept(s.raw, C.int32_t(token), &stop)); err != nil {
		return false, err
	}
	return stop != 0, nil
}
