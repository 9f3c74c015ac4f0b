//! The page index of a row group: which of its rows lie in pages whose
//! statistics allow a match, so that the direct reader ([`crate::scan`])
//! decompresses and decodes only those pages of the question's columns.

use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;

/// Per row of row group `g`: whether the page of leaf column `leaf` that
/// holds it may pass `test` (given the column index and the page number).
/// `None` when the file has no page index for that column (then every
/// page may).
pub fn rows_where(
    meta: &ParquetMetaData,
    g: usize,
    leaf: usize,
    test: impl Fn(&ColumnIndexMetaData, usize) -> bool,
) -> Option<Vec<bool>> {
    let index = meta.column_index()?.get(g)?.get(leaf)?;
    if matches!(index, ColumnIndexMetaData::NONE) {
        return None;
    }
    let pages = meta.offset_index()?.get(g)?.get(leaf)?.page_locations();
    let rows = usize::try_from(meta.row_group(g).num_rows()).ok()?;
    let mut out = vec![false; rows];
    for (i, page) in pages.iter().enumerate() {
        let start = usize::try_from(page.first_row_index).ok()?;
        let end = match pages.get(i + 1) {
            Some(next) => usize::try_from(next.first_row_index).ok()?,
            None => rows,
        };
        let keep = test(index, i);
        out.get_mut(start..end)?.iter_mut().for_each(|r| *r = keep);
    }
    Some(out)
}

/// Whether page `i` of a byte-array column may hold `v`.
pub fn may_equal(index: &ColumnIndexMetaData, i: usize, v: &[u8]) -> bool {
    match index {
        ColumnIndexMetaData::BYTE_ARRAY(ix) => {
            ix.min_value(i).is_none_or(|min| min <= v)
                && ix.max_value(i).is_none_or(|max| v <= max)
                && !index.is_null_page(i)
        }
        _ => true,
    }
}

/// Whether page `i` of an INT64 column (a time in ns) may hold a value in
/// `[from, to)`.
pub fn may_overlap(index: &ColumnIndexMetaData, i: usize, from: i64, to: i64) -> bool {
    match index {
        ColumnIndexMetaData::INT64(ix) => {
            ix.max_value(i).is_none_or(|max| *max >= from)
                && ix.min_value(i).is_none_or(|min| *min < to)
        }
        _ => true,
    }
}

/// `a` or `b`, row by row; `None` (no index) keeps every row.
pub fn or(a: Option<Vec<bool>>, b: Option<Vec<bool>>) -> Option<Vec<bool>> {
    let (mut a, b) = (a?, b?);
    a.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
    Some(a)
}

/// `a` and `b`, row by row; `None` (no index) is every row.
pub fn and(a: Option<Vec<bool>>, b: Option<Vec<bool>>) -> Option<Vec<bool>> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.iter_mut().zip(b).for_each(|(x, y)| *x &= y);
            Some(a)
        }
        (a, None) => a,
        (None, b) => b,
    }
}
