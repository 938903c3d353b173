//! Local-loss blocks (algorithm.md §4.1): forward layers plus a learning head with its own loss. No
//! error crosses a block boundary, so every block of a model updates independently.

mod conv;
mod head;
mod linear;

pub use conv::{head_geometry, HeadGeometry, LocalConv2dBlock};
pub use head::absent_head;
pub use linear::LocalLinearBlock;
