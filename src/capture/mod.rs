//! Capturing routing decisions from the gating kernel: the kernel's semantics ([`gating`]), its
//! CPU twin ([`reference`]), the ring-buffer records it writes ([`records`]), the embedded PTX
//! ([`ptx`]) and the host side that runs it through cudarc ([`device`]).

pub mod cpu;
pub mod device;
pub mod gating;
pub mod logits;
pub mod ptx;
pub mod records;
pub mod reference;
pub mod summary;
