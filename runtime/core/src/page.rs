//! Keyset paging. A cursor is opaque to clients; inside it is the ordering key of the last
//! item of the previous page, so pages stay stable while rows are inserted.

use cursor_codec::{decode_cursor, encode_cursor};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// The ordering key after which this page starts (exclusive); `None` for the first page.
    pub after: Option<i64>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

impl PageRequest {
    /// Builds a request from query parameters; the error names what is wrong.
    pub fn from_params(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, String> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
            Some(_) => return Err(format!("limit must be between 1 and {MAX_LIMIT}")),
        };
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| "cursor is not valid".to_string())?),
        };
        Ok(Self { limit, after })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows (each with its ordering key): the extra row
    /// only tells that another page exists.
    pub fn from_rows(mut rows: Vec<(i64, T)>, limit: u32) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|(seq, _)| encode_cursor(*seq))
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(|(_, item)| item).collect(),
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// A fixed prefix and the key in lowercase hex
/// keeps cursors URL-safe and lets us reject foreign strings.
mod cursor_codec {
    const PREFIX: &str = "c1";

    pub fn encode_cursor(seq: i64) -> String {
        format!("{PREFIX}{seq:x}")
    }

    pub fn decode_cursor(cursor: &str) -> Option<i64> {
        let hex = cursor.strip_prefix(PREFIX)?;
        if hex.is_empty() || hex.len() > 16 {
            return None;
        }
        i64::from_str_radix(hex, 16).ok().filter(|v| *v >= 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let page = Page::from_rows(vec![(5, 'a'), (4, 'b'), (3, 'c')], 2);
        assert_eq!(page.items, vec!['a', 'b']);
        let cursor = page.next_cursor.expect("more rows exist");
        assert_eq!(
            PageRequest::from_params(None, Some(&cursor)).unwrap().after,
            Some(4)
        );
        assert!(PageRequest::from_params(None, Some("zzz")).is_err());
        assert!(PageRequest::from_params(Some(0), None).is_err());
        assert!(Page::from_rows(vec![(1, 'a')], 2).next_cursor.is_none());
    }
}
