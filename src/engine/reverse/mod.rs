//! The reverse pass: seeds at a layer's output ([`seeds`]) are carried back to the input over
//! the saved forward values ([`backward`], the graph walk), one vector-Jacobian product per op
//! (`vjp`, with convolutions, pooling and LRN in `vjp_spatial`), all sharing the rule,
//! errors and per-node view in [`step`].

pub mod backward;
pub mod seeds;
pub mod step;
mod vjp;
mod vjp_spatial;
