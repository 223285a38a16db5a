//! NumPy `.npy` routing arrays: ExFlow / HarMoEny `[tokens, layers]` top-1 files and vLLM's
//! `[tokens, layers, top_k]` routed-experts capture (its zero-filled dense layers are dropped, see
//! [`super::layer_map`]).
//!
//! The reader understands header versions 1 to 3 and little-endian integer dtypes of 1 to 8 bytes
//! in C order. It reads the file once and converts the body with one tight loop per dtype.
//! Negative ids mean "no expert" (vLLM pads with -1).

use std::fs;
use std::path::Path;

use super::ImportOptions;
use super::layer_map::{LayerMap, ZeroFill};
use super::routing_builder::RoutingBuilder;
use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::trace::RoutingTrace;

/// The first bytes of every `.npy` file.
pub(super) const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a routing array from the `.npy` file at `path`.
pub(super) fn import(path: &Path, options: &ImportOptions) -> Result<RoutingTrace> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    import_bytes(path, &bytes, options)
}

/// Reads a routing array from `bytes`, the content of the `.npy` file at `path`.
pub(super) fn import_bytes(
    path: &Path,
    bytes: &[u8],
    options: &ImportOptions,
) -> Result<RoutingTrace> {
    let array = NpyArray::parse(bytes).map_err(|message| Error::bad_file(path, message))?;
    array.to_routing(path, options)
}

/// Writes `ids` (row-major `[tokens, layers, k]`, -1 for an empty slot) as an int16 `.npy` file
/// in vLLM's layout, with the header NumPy itself would write.
pub(super) fn write_int16(path: &Path, shape: [usize; 3], ids: &[i16]) -> Result<()> {
    let dict = format!(
        "{{'descr': '<i2', 'fortran_order': False, 'shape': ({}, {}, {}), }}",
        shape[0], shape[1], shape[2]
    );
    let mut bytes = header_v1(&dict)?;
    bytes.reserve(ids.len() * 2);
    for id in ids {
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    write_bytes_atomic(path, &bytes)
}

/// Magic, version 1.0, length and `dict`, padded with spaces and a final newline so the data
/// starts on a 64-byte boundary, exactly as NumPy writes it.
fn header_v1(dict: &str) -> Result<Vec<u8>> {
    const PREFIX_LEN: usize = 10;
    let padding = 64 - (PREFIX_LEN + dict.len() + 1) % 64;
    let header_len = dict.len() + padding + 1;
    let header_len = u16::try_from(header_len)
        .map_err(|_| Error::invalid(format!("npy header of {header_len} bytes is too long")))?;
    let mut bytes = Vec::with_capacity(PREFIX_LEN + usize::from(header_len));
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(bytes.len() + padding, b' ');
    bytes.push(b'\n');
    Ok(bytes)
}

/// Integer element types the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntDtype {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl IntDtype {
    /// Parses a NumPy `descr` string such as `<i8` or `|u1`.
    fn parse(descr: &str) -> std::result::Result<IntDtype, String> {
        let mut chars = descr.chars();
        let order = chars.next();
        let kind = chars.next();
        let size = chars.as_str();
        if !matches!(order, Some('<' | '|' | '=' | '>')) {
            return Err(format!(
                "header field 'descr': dtype '{descr}' is not a simple NumPy type (structured \
                 and unsized dtypes are not supported)"
            ));
        }
        if !matches!(kind, Some('i' | 'u')) {
            return Err(format!(
                "header field 'descr': dtype '{descr}' is not an integer type"
            ));
        }
        let signed = kind == Some('i');
        let dtype = match (signed, size) {
            (true, "1") => IntDtype::I8,
            (true, "2") => IntDtype::I16,
            (true, "4") => IntDtype::I32,
            (true, "8") => IntDtype::I64,
            (false, "1") => IntDtype::U8,
            (false, "2") => IntDtype::U16,
            (false, "4") => IntDtype::U32,
            (false, "8") => IntDtype::U64,
            _ => {
                return Err(format!(
                    "header field 'descr': dtype '{descr}' has an unsupported item size"
                ));
            }
        };
        if order == Some('>') && dtype.size() > 1 {
            return Err(format!(
                "header field 'descr': dtype '{descr}' is big-endian; only little-endian arrays \
                 are supported"
            ));
        }
        Ok(dtype)
    }

    /// Bytes per element.
    fn size(self) -> usize {
        match self {
            IntDtype::I8 | IntDtype::U8 => 1,
            IntDtype::I16 | IntDtype::U16 => 2,
            IntDtype::I32 | IntDtype::U32 => 4,
            IntDtype::I64 | IntDtype::U64 => 8,
        }
    }
}

/// A parsed `.npy` file: element type, shape and the raw little-endian body.
#[derive(Debug)]
struct NpyArray<'a> {
    dtype: IntDtype,
    shape: Vec<usize>,
    body: &'a [u8],
}

impl<'a> NpyArray<'a> {
    /// Parses the magic, version, header dictionary and checks the body length.
    fn parse(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        let (fields, body) = parse_header(bytes)?;
        let dtype = IntDtype::parse(&fields.descr)?;
        check_body(&fields, body, dtype.size())?;
        Ok(NpyArray {
            dtype,
            shape: fields.shape,
            body,
        })
    }

    /// Converts `[tokens, layers]` (top-1) or `[tokens, layers, k]` ids into routing.
    fn to_routing(&self, path: &Path, options: &ImportOptions) -> Result<RoutingTrace> {
        let (layers, k) = match self.shape[..] {
            [_, layers] => (layers, 1),
            [_, layers, k] => (layers, k),
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "header field 'shape' {:?} has rank {}: expected [tokens, layers] or \
                         [tokens, layers, top_k]",
                        self.shape,
                        self.shape.len()
                    ),
                ));
            }
        };
        if layers == 0 || k == 0 {
            return Err(Error::bad_file(
                path,
                format!(
                    "header field 'shape' {:?} has no layer or no top-k slot",
                    self.shape
                ),
            ));
        }
        let grid = Grid { path, layers, k };
        let body = self.body;
        match self.dtype {
            IntDtype::I8 => grid.route(body, options, |b: [u8; 1]| i64::from(i8::from_le_bytes(b))),
            IntDtype::I16 => {
                grid.route(body, options, |b: [u8; 2]| i64::from(i16::from_le_bytes(b)))
            }
            IntDtype::I32 => {
                grid.route(body, options, |b: [u8; 4]| i64::from(i32::from_le_bytes(b)))
            }
            IntDtype::I64 => grid.route(body, options, i64::from_le_bytes),
            IntDtype::U8 => grid.route(body, options, |b: [u8; 1]| i64::from(b[0])),
            IntDtype::U16 => {
                grid.route(body, options, |b: [u8; 2]| i64::from(u16::from_le_bytes(b)))
            }
            IntDtype::U32 => {
                grid.route(body, options, |b: [u8; 4]| i64::from(u32::from_le_bytes(b)))
            }
            // Past i64::MAX is out of range anyway.
            IntDtype::U64 => grid.route(body, options, |b: [u8; 8]| {
                i64::try_from(u64::from_le_bytes(b)).unwrap_or(i64::MAX)
            }),
        }
    }
}

/// Splits a `.npy` file into its header fields and body (C order only).
fn parse_header(bytes: &[u8]) -> std::result::Result<(HeaderFields, &[u8]), String> {
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err("not a NumPy .npy file (magic bytes missing)".into());
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        version => return Err(format!("unsupported .npy format version {version}")),
    };
    let body_start = header_start + header_len;
    let header = bytes
        .get(header_start..body_start)
        .ok_or("file ends inside the .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let fields = HeaderFields::parse(header)?;
    if fields.fortran_order {
        return Err(
            "header field 'fortran_order' is True; only C-order arrays are supported".into(),
        );
    }
    Ok((fields, &bytes[body_start..]))
}

/// Checks the body holds exactly the elements of `size` bytes the header's shape promises.
fn check_body(fields: &HeaderFields, body: &[u8], size: usize) -> std::result::Result<(), String> {
    let expected = fields
        .shape
        .iter()
        .try_fold(size, |n, &d| n.checked_mul(d))
        .ok_or("header field 'shape' describes more bytes than can exist")?;
    if body.len() != expected {
        return Err(format!(
            "body has {} bytes but header field 'shape' {:?} of dtype '{}' needs {expected} \
             (truncated file?)",
            body.len(),
            fields.shape,
            fields.descr
        ));
    }
    Ok(())
}

/// A little-endian float32 array read from a `.npy` file (router logits, biases).
#[derive(Debug, Clone, PartialEq)]
pub struct F32Array {
    /// The array's shape, outermost first.
    pub shape: Vec<usize>,
    /// The elements in C order.
    pub values: Vec<f32>,
}

/// Reads a float32 (`<f4`) `.npy` file.
pub fn read_f32(path: &Path) -> Result<F32Array> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let (fields, body) = parse_header(&bytes).map_err(|m| Error::bad_file(path, m))?;
    if !matches!(fields.descr.as_str(), "<f4" | "=f4") {
        return Err(Error::bad_file(
            path,
            format!(
                "header field 'descr': dtype '{}' is not little-endian float32 ('<f4'); convert \
                 with numpy's .astype('float32')",
                fields.descr
            ),
        ));
    }
    check_body(&fields, body, 4).map_err(|m| Error::bad_file(path, m))?;
    let (cells, _) = body.as_chunks::<4>();
    Ok(F32Array {
        shape: fields.shape,
        values: cells.iter().map(|&b| f32::from_le_bytes(b)).collect(),
    })
}

/// Writes `values` as a float32 `.npy` file of `shape`, with the header NumPy itself would write.
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    let mut bytes = header_v1(&dict)?;
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    write_bytes_atomic(path, &bytes)
}

/// The `[tokens, layers, k]` geometry of a body being converted.
struct Grid<'p> {
    path: &'p Path,
    layers: usize,
    k: usize,
}

impl Grid<'_> {
    /// The routing of `body` (elements of `N` bytes, decoded by `to_id`), without the layers
    /// [`LayerMap`] drops.
    fn route<const N: usize>(
        &self,
        body: &[u8],
        options: &ImportOptions,
        to_id: impl Fn([u8; N]) -> i64,
    ) -> Result<RoutingTrace> {
        let (cells, _) = body.as_chunks::<N>();
        let rows = || cells.chunks_exact(self.layers * self.k);
        let map = LayerMap::new(self.path, self.layers, options.decoder.as_ref(), || {
            let mut fill = ZeroFill::new(self.layers);
            for row in rows() {
                for (layer, slots) in row.chunks_exact(self.k).enumerate() {
                    fill.see(layer, slots.iter().map(|&cell| to_id(cell)));
                }
            }
            fill.finish(rows().len())
        })?;
        let mut builder = RoutingBuilder::new(
            self.path,
            map.kept(),
            options.num_experts,
            false,
            cells.len(),
        )?
        .keeping_violations(options.keep_violations);
        for (token, row) in rows().enumerate() {
            for (layer, slots) in row.chunks_exact(self.k).enumerate() {
                let Some(target) = map.target(layer) else {
                    continue;
                };
                for (rank, &cell) in slots.iter().enumerate() {
                    builder.push(target, to_id(cell)).map_err(|e| {
                        Error::bad_file(
                            self.path,
                            format!("row {token}, layer {layer}, rank {rank}: {e}"),
                        )
                    })?;
                }
                builder.end_token(target);
            }
        }
        builder.finish(self.path)
    }
}

/// The three fields of a `.npy` header dictionary.
#[derive(Debug, PartialEq)]
struct HeaderFields {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl HeaderFields {
    /// Parses the Python dict literal, e.g.
    /// `{'descr': '<i8', 'fortran_order': False, 'shape': (40800, 6), }`.
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut cursor = Literal::new(text);
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        cursor.expect('{')?;
        while !cursor.eat('}') {
            let key = cursor.string()?;
            cursor.expect(':')?;
            match key.as_str() {
                "descr" => {
                    descr = Some(cursor.string().map_err(|_| {
                        "header field 'descr' must be a string (structured dtypes are not \
                         supported)"
                            .to_string()
                    })?)
                }
                "fortran_order" => fortran_order = Some(cursor.boolean()?),
                "shape" => shape = Some(cursor.tuple()?),
                other => return Err(format!("unknown .npy header field '{other}'")),
            }
            if !cursor.eat(',') {
                cursor.expect('}')?;
                break;
            }
        }
        let missing = |field: &str| format!(".npy header has no '{field}' field");
        Ok(HeaderFields {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        })
    }
}

/// A cursor over the Python literal of a `.npy` header.
struct Literal<'a> {
    rest: &'a str,
}

impl<'a> Literal<'a> {
    fn new(text: &'a str) -> Self {
        Literal { rest: text }
    }

    /// Consumes `c` (after whitespace) if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.rest = self.rest.trim_start();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed .npy header: expected '{c}' at \"{}\"",
                self.rest.chars().take(20).collect::<String>()
            ))
        }
    }

    /// A quoted string (single or double quotes, no escapes: NumPy never writes them here).
    fn string(&mut self) -> std::result::Result<String, String> {
        self.rest = self.rest.trim_start();
        let quote = self
            .rest
            .chars()
            .next()
            .filter(|&c| c == '\'' || c == '"')
            .ok_or_else(|| "malformed .npy header: expected a quoted string".to_string())?;
        let body = &self.rest[1..];
        let end = body
            .find(quote)
            .ok_or("malformed .npy header: unterminated string")?;
        self.rest = &body[end + 1..];
        Ok(body[..end].to_string())
    }

    /// `True` or `False`.
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.rest = self.rest.trim_start();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(value);
            }
        }
        Err("header field 'fortran_order' must be True or False".into())
    }

    /// A tuple of whole numbers such as `(40800, 6)`, `(5,)` or `()`; Python 2's `L` suffix is
    /// accepted.
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        let bad = || "header field 'shape' must be a tuple of whole numbers".to_string();
        if !self.eat('(') {
            return Err(bad());
        }
        let mut dims = Vec::new();
        while !self.eat(')') {
            self.rest = self.rest.trim_start();
            let digits = self.rest.len()
                - self
                    .rest
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .len();
            let dim = self.rest[..digits].parse().map_err(|_| bad())?;
            self.rest = &self.rest[digits..];
            self.rest = self.rest.strip_prefix('L').unwrap_or(self.rest);
            dims.push(dim);
            if !self.eat(',') {
                self.expect(')').map_err(|_| bad())?;
                break;
            }
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 `.npy` file with `dict` as header and `body`.
    fn npy_bytes(dict: &str, body: &[u8]) -> Vec<u8> {
        let mut bytes = header_v1(dict).unwrap();
        bytes.extend_from_slice(body);
        bytes
    }

    fn i64_body(ids: &[i64]) -> Vec<u8> {
        ids.iter().flat_map(|id| id.to_le_bytes()).collect()
    }

    fn i16_body(ids: &[i16]) -> Vec<u8> {
        ids.iter().flat_map(|id| id.to_le_bytes()).collect()
    }

    fn import_bytes(bytes: &[u8], num_experts: Option<usize>) -> Result<RoutingTrace> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npy");
        fs::write(&path, bytes).unwrap();
        import(&path, &ImportOptions::experts(num_experts))
    }

    fn error_of(result: Result<RoutingTrace>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn top1_int64_matrix_is_split_per_layer() {
        // 3 tokens x 2 layers.
        let bytes = npy_bytes(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (3, 2), }",
            &i64_body(&[0, 5, 2, 2, 7, 1]),
        );
        let trace = import_bytes(&bytes, None).unwrap();
        assert_eq!(trace.num_experts(), 8);
        assert_eq!(trace.num_tokens(), 3);
        assert_eq!(trace.layer(0).experts(), &[0, 2, 7]);
        assert_eq!(trace.layer(1).experts(), &[5, 2, 1]);
        assert_eq!(trace.uniform_k(), Some(1));
    }

    #[test]
    fn vllm_int16_with_minus_one_is_null_routing() {
        // 2 tokens x 2 layers x top-2; token 1 has one expert at layer 0 and none at layer 1.
        let bytes = npy_bytes(
            "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 2, 2), }",
            &i16_body(&[3, 1, 0, 2, -1, 4, -1, -1]),
        );
        let trace = import_bytes(&bytes, Some(6)).unwrap();
        assert_eq!(trace.num_experts(), 6);
        assert_eq!(trace.layer(0).experts_of(0), &[3, 1]);
        assert_eq!(trace.layer(0).experts_of(1), &[4]);
        assert_eq!(trace.layer(1).experts_of(1), &[] as &[u16]);
        assert_eq!(trace.num_entries(), 5);
    }

    #[test]
    fn every_integer_dtype_and_header_version_is_read() {
        // [1, 1, 2] holding ids 1 and 3.
        let shape = "'shape': (1, 1, 2)";
        let cases: [(&str, Vec<u8>); 8] = [
            ("|i1", vec![1, 3]),
            ("|u1", vec![1, 3]),
            ("<i2", vec![1, 0, 3, 0]),
            ("<u2", vec![1, 0, 3, 0]),
            ("<i4", vec![1, 0, 0, 0, 3, 0, 0, 0]),
            ("<u4", vec![1, 0, 0, 0, 3, 0, 0, 0]),
            ("<i8", i64_body(&[1, 3])),
            ("<u8", i64_body(&[1, 3])),
        ];
        for (descr, body) in cases {
            let dict = format!("{{'descr': '{descr}', 'fortran_order': False, {shape}, }}");
            let trace = import_bytes(&npy_bytes(&dict, &body), None).unwrap();
            assert_eq!(trace.layer(0).experts(), &[1, 3], "{descr}");
        }
        // Version 2: 4-byte header length.
        let dict = "{'descr': '<i2', 'fortran_order': False, 'shape': (1, 1), }\n";
        let mut v2 = MAGIC.to_vec();
        v2.extend_from_slice(&[2, 0]);
        v2.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        v2.extend_from_slice(dict.as_bytes());
        v2.extend_from_slice(&[9, 0]);
        assert_eq!(import_bytes(&v2, None).unwrap().layer(0).experts(), &[9]);
    }

    #[test]
    fn bad_headers_name_the_field() {
        let cases = [
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }",
                "dtype '<f4' is not an integer type",
            ),
            (
                "{'descr': '>i8', 'fortran_order': False, 'shape': (1, 1), }",
                "dtype '>i8' is big-endian",
            ),
            (
                "{'descr': '<i8', 'fortran_order': True, 'shape': (1, 1), }",
                "header field 'fortran_order' is True",
            ),
            (
                "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }",
                "header field 'shape' [1] has rank 1",
            ),
            (
                "{'descr': '<i8', 'fortran_order': False, }",
                ".npy header has no 'shape' field",
            ),
            (
                "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1), }",
                "body has 8 bytes but header field 'shape' [2, 1] of dtype '<i8' needs 16",
            ),
        ];
        for (dict, expected) in cases {
            let message = error_of(import_bytes(&npy_bytes(dict, &i64_body(&[1])), None));
            assert!(message.contains(expected), "{message}");
        }
        assert!(error_of(import_bytes(b"PK\x03\x04", None)).contains("magic bytes missing"));
    }

    #[test]
    fn out_of_range_ids_name_row_layer_and_rank() {
        let bytes = npy_bytes(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1, 2), }",
            &i64_body(&[0, 1, 2, 40]),
        );
        let message = error_of(import_bytes(&bytes, Some(32)));
        assert!(
            message.ends_with("row 1, layer 0, rank 1: expert id 40 >= 32 experts"),
            "{message}"
        );
        let big = npy_bytes(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }",
            &i64_body(&[70000]),
        );
        assert!(error_of(import_bytes(&big, None)).contains("expert id 70000 does not fit"));
    }

    #[test]
    fn written_file_matches_numpy_layout_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        write_int16(&path, [2, 1, 2], &[4, -1, 0, 3]).unwrap();
        let bytes = fs::read(&path).unwrap();
        // 10-byte prefix with header length 118 (0x76): 62 bytes of dict, 55 spaces, newline.
        assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00\x76\x00");
        assert_eq!(
            &bytes[10..72],
            b"{'descr': '<i2', 'fortran_order': False, 'shape': (2, 1, 2), }"
        );
        assert!(bytes[72..127].iter().all(|&b| b == b' '));
        assert_eq!(bytes[127], b'\n');
        assert_eq!(&bytes[128..], &i16_body(&[4, -1, 0, 3])[..]);
        let trace = import(&path, &ImportOptions::default()).unwrap();
        assert_eq!(trace.layer(0).offsets(), &[0, 1, 3]);
    }

    #[test]
    fn real_switch_traces_import() {
        let Some(dir) = crate::trace::importers::tests::shared_data() else {
            return;
        };
        // Loads per expert at layer 0 and the first non-padding row, computed from the raw file.
        let cases: [(usize, [f64; 4], usize, [u16; 6]); 3] = [
            (8, [3721.0, 6918.0, 6395.0, 3999.0], 156, [0, 0, 0, 0, 0, 1]),
            (32, [553.0, 633.0, 463.0, 510.0], 77, [1, 0, 0, 0, 0, 0]),
            (
                128,
                [5.0, 474.0, 606.0, 117.0],
                1000,
                [33, 26, 18, 41, 32, 19],
            ),
        ];
        for (experts, loads, row, ids) in cases {
            let path = dir.join(format!("switch-top1/switch-base-{experts}.trace.npy"));
            let trace = import(&path, &ImportOptions::default()).unwrap();
            assert_eq!(trace.num_tokens(), 40800);
            assert_eq!(trace.num_layers(), 6);
            assert_eq!(trace.num_experts(), experts);
            assert_eq!(trace.uniform_k(), Some(1));
            assert_eq!(&trace.expert_loads().layer(0)[..4], &loads);
            let got: Vec<u16> = (0..6).map(|l| trace.layer(l).experts_of(row)[0]).collect();
            assert_eq!(got, ids);
        }
    }

    #[test]
    fn float32_arrays_round_trip_and_other_dtypes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logits.npy");
        write_f32(&path, &[2, 3], &[0.5, -1.0, 2.0, 3.25, 0.0, -0.125]).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            (bytes.len() - 24) % 64,
            0,
            "data starts on a 64-byte boundary"
        );
        let array = read_f32(&path).unwrap();
        assert_eq!(array.shape, [2, 3]);
        assert_eq!(array.values, [0.5, -1.0, 2.0, 3.25, 0.0, -0.125]);
        write_f32(&path, &[4], &[1.0; 4]).unwrap();
        assert_eq!(read_f32(&path).unwrap().shape, [4]);
        let ints = dir.path().join("ids.npy");
        write_int16(&ints, [1, 1, 1], &[3]).unwrap();
        let error = read_f32(&ints)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.ends_with("dtype '<i2' is not little-endian float32 ('<f4'); convert with numpy's .astype('float32')"), "{error}");
    }
}
