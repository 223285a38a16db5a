//! Capturing routing decisions with moesim's gating kernel (`kernels/gating.cu`).
//!
//! [`gating`] states what a decision computes; [`reference`] is the kernel's CPU twin (bit for
//! bit); [`records`] decodes the instrumented kernel's ring buffer into a trace; [`ptx`] holds
//! the PTX build.rs embedded; [`device`] runs the kernel through cudarc; [`cpu`] captures with
//! the twin instead; [`logits`] reads recorded router logits; [`summary`] writes the trace and
//! its `.capture.json` sidecar.

pub mod cpu;
pub mod device;
pub mod gating;
pub mod logits;
pub mod ptx;
pub mod records;
pub mod reference;
pub mod summary;
