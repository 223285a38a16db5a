//! The integration tests, one binary (one link step instead of one per file): each module is
//! one former test file; `common` holds their shared helpers and `published` the published
//! kernel tables. `capture_gpu` (run alone on a lent GPU) and `fuzz` stay their own binaries.

mod common;
mod published;

mod architecture;
mod atomic_run;
mod bad_input;
mod baseline;
mod capture;
mod compare;
mod cpu_capture_trace;
mod dispatch;
mod elastic;
mod end_to_end;
mod hardening;
mod html_report;
mod interop;
mod kernel_emulation;
mod kernels;
mod loadfit;
mod offload;
mod place;
mod plan;
mod predict;
mod profile;
mod replacement;
mod serving;
mod sim_properties;
mod sim_tiers;
mod simulate;
mod speculation;
mod sweep;
mod threads;
mod workload;
