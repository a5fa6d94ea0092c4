//! The C declarations of dsv4.h that the safe wrapper uses (layouts match the header; the ABI
//! test of the C library freezes them).
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

pub type dsv4_status = c_int;
pub const DSV4_OK: dsv4_status = 0;
pub const DSV4_ERR_BUFFER_TOO_SMALL: dsv4_status = 8;
pub const DSV4_OUTPUT_NONE: i32 = 0;
pub const DSV4_OUTPUT_LAST: i32 = 1;
pub const DSV4_TOKENIZE_SPECIAL: u32 = 1;

#[repr(C)]
pub struct dsv4_model {
    _private: [u8; 0],
}
#[repr(C)]
pub struct dsv4_session {
    _private: [u8; 0],
}
#[repr(C)]
pub struct dsv4_tokenizer {
    _private: [u8; 0],
}
#[repr(C)]
pub struct dsv4_sampler {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct dsv4_model_params {
    pub struct_size: usize,
    pub backend: *const c_char,
    pub n_threads: i32,
    pub memory_limit: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct dsv4_session_params {
    pub struct_size: usize,
    pub max_positions: i64,
    pub max_chunk: i64,
    pub n_threads: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct dsv4_append_params {
    pub struct_size: usize,
    pub output: i32,
    pub abort_cb: Option<extern "C" fn(*mut c_void) -> c_int>,
    pub abort_user: *mut c_void,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct dsv4_sampler_params {
    pub struct_size: usize,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub penalty_last_n: i32,
    pub seed: u64,
    pub stop_tokens: *const i32,
    pub n_stop_tokens: usize,
    pub stop_strings: *const *const c_char,
    pub n_stop_strings: usize,
    pub logit_bias_tokens: *const i32,
    pub logit_bias_values: *const f32,
    pub n_logit_bias: usize,
}

extern "C" {
    pub fn dsv4_version() -> *const c_char;
    pub fn dsv4_status_name(status: dsv4_status) -> *const c_char;
    pub fn dsv4_last_error() -> *const c_char;

    pub fn dsv4_model_default_params() -> dsv4_model_params;
    pub fn dsv4_model_load(dir: *const c_char, params: *const dsv4_model_params, out: *mut *mut dsv4_model) -> dsv4_status;
    pub fn dsv4_model_free(model: *mut dsv4_model);
    pub fn dsv4_model_n_vocab(model: *const dsv4_model, out: *mut i64) -> dsv4_status;
    pub fn dsv4_model_tokenizer(model: *const dsv4_model, out: *mut *mut dsv4_tokenizer) -> dsv4_status;

    pub fn dsv4_session_default_params() -> dsv4_session_params;
    pub fn dsv4_session_create(model: *mut dsv4_model, params: *const dsv4_session_params, out: *mut *mut dsv4_session) -> dsv4_status;
    pub fn dsv4_session_free(session: *mut dsv4_session);
    pub fn dsv4_append_default_params() -> dsv4_append_params;
    pub fn dsv4_session_append_ex(session: *mut dsv4_session, tokens: *const i32, n_tokens: usize,
                                  params: *const dsv4_append_params, logits: *mut f32, logits_capacity: usize) -> dsv4_status;
    pub fn dsv4_session_position(session: *const dsv4_session, out: *mut i64) -> dsv4_status;
    pub fn dsv4_session_last_error(session: *const dsv4_session) -> *const c_char;

    pub fn dsv4_tokenizer_load(path: *const c_char, out: *mut *mut dsv4_tokenizer) -> dsv4_status;
    pub fn dsv4_tokenizer_free(tokenizer: *mut dsv4_tokenizer);
    pub fn dsv4_tokenizer_eos(tokenizer: *const dsv4_tokenizer, out: *mut i32) -> dsv4_status;
    pub fn dsv4_tokenize(tokenizer: *const dsv4_tokenizer, text: *const c_char, text_len: usize, flags: u32,
                         ids: *mut i32, capacity: usize, n_ids: *mut usize) -> dsv4_status;
    pub fn dsv4_detokenize(tokenizer: *const dsv4_tokenizer, ids: *const i32, n_ids: usize, flags: u32,
                           text: *mut c_char, capacity: usize, text_len: *mut usize) -> dsv4_status;

    pub fn dsv4_sampler_default_params() -> dsv4_sampler_params;
    pub fn dsv4_sampler_create(params: *const dsv4_sampler_params, tokenizer: *const dsv4_tokenizer, out: *mut *mut dsv4_sampler) -> dsv4_status;
    pub fn dsv4_sampler_free(sampler: *mut dsv4_sampler);
    pub fn dsv4_sampler_sample(sampler: *mut dsv4_sampler, logits: *const f32, n_vocab: usize, token: *mut i32) -> dsv4_status;
    pub fn dsv4_sampler_accept(sampler: *mut dsv4_sampler, token: i32, stop: *mut i32) -> dsv4_status;
}
