//! A share of a batch: the consecutive rows one worker of data-parallel training computes
//! (`model::gradients`). The dropout layers draw the whole batch's masks and use the share's
//! rows (`layers::Dropout::forward_share`).

use crate::error::{Error, Result};
use alloc::format;

/// Which rows of a batch a call computes: rows `start .. start + rows` of a batch of `total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// The first row of the share in the batch.
    pub start: usize,
    /// Rows in the share (at least 1).
    pub rows: usize,
    /// Rows in the whole batch.
    pub total: usize,
}

impl Share {
    /// The whole batch of `rows` rows.
    pub fn whole(rows: usize) -> Self {
        Share {
            start: 0,
            rows,
            total: rows,
        }
    }

    /// Rows of the batch after the share.
    pub(crate) fn after(&self) -> usize {
        self.total
            .saturating_sub(self.start.saturating_add(self.rows))
    }

    /// An error unless the share is non-empty, lies inside its batch and has `rows` rows.
    pub fn check(&self, rows: usize) -> Result<()> {
        let end = self.start.checked_add(self.rows);
        if self.rows == 0 || self.rows != rows || end.is_none_or(|e| e > self.total) {
            return Err(Error::shape(format!(
                "a share of {} rows from row {} of a batch of {} does not fit a slice of {rows} \
                 rows (it needs 1 ≤ rows = the slice's rows and start + rows ≤ total)",
                self.rows, self.start, self.total
            )));
        }
        Ok(())
    }
}
