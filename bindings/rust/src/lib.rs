//! Safe Rust over dsv4's C ABI: models, sessions (the KV cache of one sequence), the V4
//! tokenizer and the sampler. Every failure is an [`Error`] with the library's status and message.
//!
//! ```no_run
//! let model = dsv4::Model::load("path/to/model")?;
//! let mut session = dsv4::Session::new(&model)?;
//! let mut sampler = dsv4::Sampler::greedy()?;
//! let logits = session.append(&[1, 2, 3])?;
//! let next = sampler.sample(&logits)?;
//! # Ok::<(), dsv4::Error>(())
//! ```

pub mod sys;

use std::ffi::{CStr, CString};
use std::fmt;
use std::ptr;

/// A failed call: the C status code, its name and the library's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: i32,
    pub name: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}
impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn c_text(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn error_from(status: sys::dsv4_status, message: String) -> Error {
    Error { status, name: c_text(unsafe { sys::dsv4_status_name(status) }), message }
}

fn check(status: sys::dsv4_status) -> Result<()> {
    if status == sys::DSV4_OK {
        Ok(())
    } else {
        Err(error_from(status, c_text(unsafe { sys::dsv4_last_error() })))
    }
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| error_from(1, "string contains a NUL byte".into()))
}

/// The library version, e.g. "0.3.0".
pub fn version() -> String {
    c_text(unsafe { sys::dsv4_version() })
}

/// A loaded checkpoint. Shared read-only by any number of sessions and threads.
pub struct Model {
    raw: *mut sys::dsv4_model,
}
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    /// Loads a checkpoint directory (config.json + safetensors) on the CPU backend.
    pub fn load(dir: &str) -> Result<Model> {
        let dir = c_string(dir)?;
        let params = unsafe { sys::dsv4_model_default_params() };
        let mut raw = ptr::null_mut();
        check(unsafe { sys::dsv4_model_load(dir.as_ptr(), &params, &mut raw) })?;
        Ok(Model { raw })
    }
    pub fn n_vocab(&self) -> Result<usize> {
        let mut v = 0i64;
        check(unsafe { sys::dsv4_model_n_vocab(self.raw, &mut v) })?;
        Ok(v as usize)
    }
    /// The tokenizer shipped in the model directory.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let mut raw = ptr::null_mut();
        check(unsafe { sys::dsv4_model_tokenizer(self.raw, &mut raw) })?;
        Ok(Tokenizer { raw })
    }
}
impl Drop for Model {
    fn drop(&mut self) {
        unsafe { sys::dsv4_model_free(self.raw) }
    }
}

/// One sequence: its KV cache and position. Use from one thread at a time.
pub struct Session {
    raw: *mut sys::dsv4_session,
    n_vocab: usize,
}
unsafe impl Send for Session {}

impl Session {
    pub fn new(model: &Model) -> Result<Session> {
        let params = unsafe { sys::dsv4_session_default_params() };
        let mut raw = ptr::null_mut();
        check(unsafe { sys::dsv4_session_create(model.raw, &params, &mut raw) })?;
        Ok(Session { raw, n_vocab: model.n_vocab()? })
    }
    fn checked(&self, status: sys::dsv4_status) -> Result<()> {
        if status == sys::DSV4_OK {
            Ok(())
        } else {
            // The session's own error slot: correct even if the thread changed meanwhile.
            Err(error_from(status, c_text(unsafe { sys::dsv4_session_last_error(self.raw) })))
        }
    }
    /// Appends tokens and returns the logits after the last one.
    pub fn append(&mut self, tokens: &[i32]) -> Result<Vec<f32>> {
        let mut logits = vec![0f32; self.n_vocab];
        let mut p = unsafe { sys::dsv4_append_default_params() };
        p.output = sys::DSV4_OUTPUT_LAST;
        self.checked(unsafe {
            sys::dsv4_session_append_ex(self.raw, tokens.as_ptr(), tokens.len(), &p, logits.as_mut_ptr(), logits.len())
        })?;
        Ok(logits)
    }
    /// Appends tokens without computing logits.
    pub fn prefill(&mut self, tokens: &[i32]) -> Result<()> {
        let mut p = unsafe { sys::dsv4_append_default_params() };
        p.output = sys::DSV4_OUTPUT_NONE;
        self.checked(unsafe {
            sys::dsv4_session_append_ex(self.raw, tokens.as_ptr(), tokens.len(), &p, ptr::null_mut(), 0)
        })
    }
    pub fn position(&self) -> Result<i64> {
        let mut v = 0i64;
        self.checked(unsafe { sys::dsv4_session_position(self.raw, &mut v) })?;
        Ok(v)
    }
}
impl Drop for Session {
    fn drop(&mut self) {
        unsafe { sys::dsv4_session_free(self.raw) }
    }
}

/// The V4 tokenizer (byte-level BPE). Immutable; shareable between threads.
pub struct Tokenizer {
    raw: *mut sys::dsv4_tokenizer,
}
unsafe impl Send for Tokenizer {}
unsafe impl Sync for Tokenizer {}

impl Tokenizer {
    /// Loads tokenizer.json (a file, or a directory holding it).
    pub fn load(path: &str) -> Result<Tokenizer> {
        let path = c_string(path)?;
        let mut raw = ptr::null_mut();
        check(unsafe { sys::dsv4_tokenizer_load(path.as_ptr(), &mut raw) })?;
        Ok(Tokenizer { raw })
    }
    /// Token ids of `text`; `special` lets added tokens such as "<｜User｜>" match.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<i32>> {
        let flags = if special { sys::DSV4_TOKENIZE_SPECIAL } else { 0 };
        let mut n = 0usize;
        let mut ids = vec![0i32; text.len() / 2 + 8];
        let mut status = unsafe {
            sys::dsv4_tokenize(self.raw, text.as_ptr() as *const _, text.len(), flags, ids.as_mut_ptr(), ids.len(), &mut n)
        };
        if status == sys::DSV4_ERR_BUFFER_TOO_SMALL {
            ids.resize(n, 0);
            status = unsafe {
                sys::dsv4_tokenize(self.raw, text.as_ptr() as *const _, text.len(), flags, ids.as_mut_ptr(), ids.len(), &mut n)
            };
        }
        check(status)?;
        ids.truncate(n);
        Ok(ids)
    }
    pub fn decode(&self, ids: &[i32]) -> Result<String> {
        let mut len = 0usize;
        let mut buf = vec![0u8; ids.len() * 8 + 16];
        let mut status = unsafe {
            sys::dsv4_detokenize(self.raw, ids.as_ptr(), ids.len(), 0, buf.as_mut_ptr() as *mut _, buf.len(), &mut len)
        };
        if status == sys::DSV4_ERR_BUFFER_TOO_SMALL {
            buf.resize(len + 1, 0);
            status = unsafe {
                sys::dsv4_detokenize(self.raw, ids.as_ptr(), ids.len(), 0, buf.as_mut_ptr() as *mut _, buf.len(), &mut len)
            };
        }
        check(status)?;
        buf.truncate(len);
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
    pub fn eos(&self) -> Result<i32> {
        let mut v = 0i32;
        check(unsafe { sys::dsv4_tokenizer_eos(self.raw, &mut v) })?;
        Ok(v)
    }
}
impl Drop for Tokenizer {
    fn drop(&mut self) {
        unsafe { sys::dsv4_tokenizer_free(self.raw) }
    }
}

/// Chooses tokens from logits (seeded: the same seed gives the same tokens everywhere).
pub struct Sampler {
    raw: *mut sys::dsv4_sampler,
}
unsafe impl Send for Sampler {}

impl Sampler {
    /// A sampler with temperature, top-k, top-p and a seed (temperature 0 = greedy).
    pub fn new(temperature: f32, top_k: i32, top_p: f32, seed: u64) -> Result<Sampler> {
        let mut p = unsafe { sys::dsv4_sampler_default_params() };
        p.temperature = temperature;
        p.top_k = top_k;
        p.top_p = top_p;
        p.seed = seed;
        let mut raw = ptr::null_mut();
        check(unsafe { sys::dsv4_sampler_create(&p, ptr::null(), &mut raw) })?;
        Ok(Sampler { raw })
    }
    pub fn greedy() -> Result<Sampler> {
        Sampler::new(0.0, 0, 1.0, 0)
    }
    pub fn sample(&mut self, logits: &[f32]) -> Result<i32> {
        let mut t = -1i32;
        check(unsafe { sys::dsv4_sampler_sample(self.raw, logits.as_ptr(), logits.len(), &mut t) })?;
        Ok(t)
    }
    /// Records a token; true when it ends generation (a stop token).
    pub fn accept(&mut self, token: i32) -> Result<bool> {
        let mut stop = 0i32;
        check(unsafe { sys::dsv4_sampler_accept(self.raw, token, &mut stop) })?;
        Ok(stop != 0)
    }
}
impl Drop for Sampler {
    fn drop(&mut self) {
        unsafe { sys::dsv4_sampler_free(self.raw) }
    }
}
