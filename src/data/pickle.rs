//! A small, safe python pickle reader (protocols 0-4, no code execution)
//! with numpy array support, used for DCRNN's `adj_mx.pkl`
//! (`[sensor_ids, sensor_id_to_ind, adj_mx]`).
//!
//! Objects live in an arena and the stack and memo hold indices into it, so
//! a container that is memoized and then mutated (APPEND after PUT) reads
//! back correctly through GET, as in python.

use std::path::Path;

use super::{check_finite, DataError, Graph};

/// A decoded pickle value. Python 2 `str` (and latin1-decoded bytes) become
/// `Str`; numpy arrays become `NdArray` with values converted to f32.
#[derive(Clone, Debug, PartialEq)]
pub enum PickleValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PickleValue>),
    Tuple(Vec<PickleValue>),
    Dict(Vec<(PickleValue, PickleValue)>),
    Set(Vec<PickleValue>),
    /// A class or function reference that was not called.
    Global {
        module: String,
        name: String,
    },
    /// `numpy.dtype` with its descriptor, e.g. `<f4`.
    Dtype(String),
    NdArray {
        shape: Vec<usize>,
        data: Vec<f32>,
    },
    /// Any other `callable(*args)` result (with BUILD state if any).
    Object {
        callable: Box<PickleValue>,
        args: Box<PickleValue>,
        state: Option<Box<PickleValue>>,
    },
}

impl PickleValue {
    /// The elements of a list or tuple.
    pub fn as_seq(&self) -> Option<&[PickleValue]> {
        match self {
            PickleValue::List(v) | PickleValue::Tuple(v) => Some(v),
            _ => None,
        }
    }
    /// A string, or bytes decoded as latin1 (python 2 `str`).
    pub fn as_text(&self) -> Option<String> {
        match self {
            PickleValue::Str(s) => Some(s.clone()),
            PickleValue::Bytes(b) => Some(b.iter().map(|c| char::from(*c)).collect()),
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            PickleValue::None => "None",
            PickleValue::Bool(_) => "bool",
            PickleValue::Int(_) => "int",
            PickleValue::Float(_) => "float",
            PickleValue::Str(_) => "str",
            PickleValue::Bytes(_) => "bytes",
            PickleValue::List(_) => "list",
            PickleValue::Tuple(_) => "tuple",
            PickleValue::Dict(_) => "dict",
            PickleValue::Set(_) => "set",
            PickleValue::Global { .. } => "global",
            PickleValue::Dtype(_) => "numpy.dtype",
            PickleValue::NdArray { .. } => "numpy.ndarray",
            PickleValue::Object { .. } => "object",
        }
    }
}

/// Arena node: like `PickleValue` but children are arena indices.
#[derive(Clone, Debug)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Set(Vec<usize>),
    Global {
        module: String,
        name: String,
    },
    /// `numpy.dtype(code, ...)`; byte order is filled in by BUILD.
    Dtype {
        code: String,
        order: char,
    },
    /// `_reconstruct(ndarray, ...)` waiting for its BUILD state.
    PendingArray,
    NdArray {
        shape: Vec<usize>,
        data: Vec<f32>,
    },
    Object {
        callable: usize,
        args: usize,
        state: Option<usize>,
    },
}

/// Reads and decodes a pickle file.
pub fn read_pickle(path: &Path) -> Result<PickleValue, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_pickle(&bytes, path)
}

/// Decodes pickle bytes; `path` is used in error messages only.
pub fn parse_pickle(bytes: &[u8], path: &Path) -> Result<PickleValue, DataError> {
    let mut vm = Vm {
        path,
        bytes,
        pos: 0,
        arena: Vec::new(),
        stack: Vec::new(),
        memo: std::collections::HashMap::new(),
    };
    let root = vm.run()?;
    vm.to_value(root, 0)
}

struct Vm<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    arena: Vec<Node>,
    /// `None` is a MARK.
    stack: Vec<Option<usize>>,
    memo: std::collections::HashMap<u64, usize>,
}

impl<'a> Vm<'a> {
    fn err(&self, at: usize, msg: impl Into<String>) -> DataError {
        DataError::format(self.path, format!("pickle byte {at}: {}", msg.into()))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DataError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(DataError::truncated(
                self.path,
                format!(
                    "pickle ends at byte {} inside {what} (needs {n} more bytes from byte {})",
                    self.bytes.len(),
                    self.pos
                ),
            ));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn line(&mut self, what: &str) -> Result<&'a [u8], DataError> {
        let rest = &self.bytes[self.pos..];
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            return Err(DataError::truncated(
                self.path,
                format!(
                    "pickle ends inside {what} at byte {} (no newline)",
                    self.pos
                ),
            ));
        };
        self.pos += nl + 1;
        let l = &rest[..nl];
        Ok(l.strip_suffix(b"\r").unwrap_or(l))
    }

    fn line_str(&mut self, what: &str) -> Result<&'a str, DataError> {
        let at = self.pos;
        let l = self.line(what)?;
        std::str::from_utf8(l).map_err(|_| self.err(at, format!("{what} is not ascii")))
    }

    fn u8(&mut self, what: &str) -> Result<u8, DataError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, DataError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DataError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, DataError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len_of(&self, v: u64, at: usize) -> Result<usize, DataError> {
        usize::try_from(v).map_err(|_| self.err(at, format!("length {v} too large")))
    }

    fn alloc(&mut self, n: Node) -> usize {
        self.arena.push(n);
        self.arena.len() - 1
    }
    fn push(&mut self, n: Node) {
        let id = self.alloc(n);
        self.stack.push(Some(id));
    }
    fn pop(&mut self, at: usize, op: &str) -> Result<usize, DataError> {
        match self.stack.pop() {
            Some(Some(id)) => Ok(id),
            Some(None) => Err(self.err(at, format!("{op} found a MARK where it needs a value"))),
            None => Err(self.err(at, format!("{op} on an empty stack"))),
        }
    }
    fn top(&self, at: usize, op: &str) -> Result<usize, DataError> {
        match self.stack.last() {
            Some(Some(id)) => Ok(*id),
            _ => Err(self.err(at, format!("{op} needs a value on the stack"))),
        }
    }
    /// Pops everything above the topmost MARK (and the MARK).
    fn pop_mark(&mut self, at: usize, op: &str) -> Result<Vec<usize>, DataError> {
        let Some(m) = self.stack.iter().rposition(Option::is_none) else {
            return Err(self.err(at, format!("{op} without a MARK")));
        };
        let items: Vec<usize> = self.stack.drain(m..).flatten().collect();
        Ok(items)
    }
    fn memo_get(&self, at: usize, key: u64) -> Result<usize, DataError> {
        self.memo
            .get(&key)
            .copied()
            .ok_or_else(|| self.err(at, format!("memo key {key} was never stored")))
    }

    fn run(&mut self) -> Result<usize, DataError> {
        loop {
            let at = self.pos;
            let op = match self.bytes.get(self.pos) {
                Some(b) => *b,
                None => {
                    return Err(DataError::truncated(
                        self.path,
                        format!(
                            "pickle ends at byte {} without a STOP opcode",
                            self.bytes.len()
                        ),
                    ))
                }
            };
            self.pos += 1;
            match op {
                b'.' => return self.pop(at, "STOP"),
                b'(' => self.stack.push(None),
                b'0' => {
                    self.stack.pop();
                }
                b'1' => {
                    self.pop_mark(at, "POP_MARK")?;
                }
                b'2' => {
                    let t = self.top(at, "DUP")?;
                    self.stack.push(Some(t));
                }
                b'\x80' => {
                    let v = self.u8("PROTO")?;
                    if v > 5 {
                        return Err(self.err(at, format!("unsupported pickle protocol {v}")));
                    }
                }
                b'\x95' => {
                    // FRAME: only a length hint for buffered readers.
                    self.u64("FRAME")?;
                }
                b'N' => self.push(Node::None),
                b'\x88' => self.push(Node::Bool(true)),
                b'\x89' => self.push(Node::Bool(false)),
                b'I' => {
                    let s = self.line_str("INT")?;
                    let n = match s {
                        "00" => Node::Bool(false),
                        "01" => Node::Bool(true),
                        _ => Node::Int(
                            s.parse()
                                .map_err(|_| self.err(at, format!("bad INT `{s}`")))?,
                        ),
                    };
                    self.push(n);
                }
                b'L' => {
                    let s = self.line_str("LONG")?;
                    let t = s.strip_suffix('L').unwrap_or(s);
                    let v = t
                        .parse()
                        .map_err(|_| self.err(at, format!("LONG `{s}` does not fit in i64")))?;
                    self.push(Node::Int(v));
                }
                b'J' => {
                    let v = self.u32("BININT")? as i32;
                    self.push(Node::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8("BININT1")?;
                    self.push(Node::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16("BININT2")?;
                    self.push(Node::Int(i64::from(v)));
                }
                b'\x8a' | b'\x8b' => {
                    let n = if op == b'\x8a' {
                        usize::from(self.u8("LONG1")?)
                    } else {
                        let n = self.u32("LONG4")?;
                        self.len_of(u64::from(n), at)?
                    };
                    let b = self.take(n, "LONG1/LONG4")?;
                    if n > 8 {
                        return Err(self.err(at, format!("{n}-byte integer does not fit in i64")));
                    }
                    let mut a = if b.last().is_some_and(|x| x & 0x80 != 0) {
                        [0xffu8; 8]
                    } else {
                        [0u8; 8]
                    };
                    a[..n].copy_from_slice(b);
                    self.push(Node::Int(i64::from_le_bytes(a)));
                }
                b'F' => {
                    let s = self.line_str("FLOAT")?;
                    let v = s
                        .parse()
                        .map_err(|_| self.err(at, format!("bad FLOAT `{s}`")))?;
                    self.push(Node::Float(v));
                }
                b'G' => {
                    let b = self.take(8, "BINFLOAT")?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Node::Float(f64::from_be_bytes(a)));
                }
                b'S' => {
                    let l = self.line("STRING")?;
                    let raw = unquote_python_string(l).map_err(|m| self.err(at, m))?;
                    self.push(Node::Str(latin1(&raw)));
                }
                b'V' => {
                    let l = self.line("UNICODE")?;
                    let s = raw_unicode_escape(l).map_err(|m| self.err(at, m))?;
                    self.push(Node::Str(s));
                }
                b'T' | b'U' | b'B' | b'C' | b'\x8e' => {
                    let (n, what) = match op {
                        b'T' => (u64::from(self.u32("BINSTRING")?), "BINSTRING"),
                        b'U' => (u64::from(self.u8("SHORT_BINSTRING")?), "SHORT_BINSTRING"),
                        b'B' => (u64::from(self.u32("BINBYTES")?), "BINBYTES"),
                        b'C' => (u64::from(self.u8("SHORT_BINBYTES")?), "SHORT_BINBYTES"),
                        _ => (self.u64("BINBYTES8")?, "BINBYTES8"),
                    };
                    let n = self.len_of(n, at)?;
                    let b = self.take(n, what)?;
                    // Python 2 str (BINSTRING) is decoded as latin1, like
                    // `pickle.load(f, encoding='latin1')`; bytes stay bytes.
                    let node = if matches!(op, b'T' | b'U') {
                        Node::Str(latin1(b))
                    } else {
                        Node::Bytes(b.to_vec())
                    };
                    self.push(node);
                }
                b'X' | b'\x8c' | b'\x8d' => {
                    let n = match op {
                        b'X' => u64::from(self.u32("BINUNICODE")?),
                        b'\x8c' => u64::from(self.u8("SHORT_BINUNICODE")?),
                        _ => self.u64("BINUNICODE8")?,
                    };
                    let n = self.len_of(n, at)?;
                    let b = self.take(n, "unicode string")?;
                    let s = std::str::from_utf8(b)
                        .map_err(|_| self.err(at, "unicode string is not valid utf-8"))?;
                    self.push(Node::Str(s.to_string()));
                }
                b']' => self.push(Node::List(Vec::new())),
                b'}' => self.push(Node::Dict(Vec::new())),
                b')' => self.push(Node::Tuple(Vec::new())),
                b'\x8f' => self.push(Node::Set(Vec::new())),
                b'l' => {
                    let items = self.pop_mark(at, "LIST")?;
                    self.push(Node::List(items));
                }
                b't' => {
                    let items = self.pop_mark(at, "TUPLE")?;
                    self.push(Node::Tuple(items));
                }
                b'\x91' => {
                    let items = self.pop_mark(at, "FROZENSET")?;
                    self.push(Node::Set(items));
                }
                b'd' => {
                    let items = self.pop_mark(at, "DICT")?;
                    let pairs = pairs_of(&items)
                        .ok_or_else(|| self.err(at, "DICT with an odd item count"))?;
                    self.push(Node::Dict(pairs));
                }
                b'\x85' | b'\x86' | b'\x87' => {
                    let k = usize::from(op - b'\x84');
                    let mut items = Vec::with_capacity(k);
                    for _ in 0..k {
                        items.push(self.pop(at, "TUPLEn")?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items));
                }
                b'a' => {
                    let v = self.pop(at, "APPEND")?;
                    let l = self.top(at, "APPEND")?;
                    match &mut self.arena[l] {
                        Node::List(items) => items.push(v),
                        _ => return Err(self.err(at, "APPEND to something that is not a list")),
                    }
                }
                b'e' => {
                    let vs = self.pop_mark(at, "APPENDS")?;
                    let l = self.top(at, "APPENDS")?;
                    match &mut self.arena[l] {
                        Node::List(items) => items.extend(vs),
                        _ => return Err(self.err(at, "APPENDS to something that is not a list")),
                    }
                }
                b's' => {
                    let v = self.pop(at, "SETITEM")?;
                    let k = self.pop(at, "SETITEM")?;
                    let d = self.top(at, "SETITEM")?;
                    match &mut self.arena[d] {
                        Node::Dict(items) => items.push((k, v)),
                        _ => return Err(self.err(at, "SETITEM on something that is not a dict")),
                    }
                }
                b'u' => {
                    let vs = self.pop_mark(at, "SETITEMS")?;
                    let pairs = pairs_of(&vs)
                        .ok_or_else(|| self.err(at, "SETITEMS with an odd item count"))?;
                    let d = self.top(at, "SETITEMS")?;
                    match &mut self.arena[d] {
                        Node::Dict(items) => items.extend(pairs),
                        _ => return Err(self.err(at, "SETITEMS on something that is not a dict")),
                    }
                }
                b'\x90' => {
                    let vs = self.pop_mark(at, "ADDITEMS")?;
                    let s = self.top(at, "ADDITEMS")?;
                    match &mut self.arena[s] {
                        Node::Set(items) => items.extend(vs),
                        _ => return Err(self.err(at, "ADDITEMS on something that is not a set")),
                    }
                }
                b'p' => {
                    let s = self.line_str("PUT")?;
                    let k = s
                        .parse()
                        .map_err(|_| self.err(at, format!("bad PUT key `{s}`")))?;
                    let t = self.top(at, "PUT")?;
                    self.memo.insert(k, t);
                }
                b'q' => {
                    let k = u64::from(self.u8("BINPUT")?);
                    let t = self.top(at, "BINPUT")?;
                    self.memo.insert(k, t);
                }
                b'r' => {
                    let k = u64::from(self.u32("LONG_BINPUT")?);
                    let t = self.top(at, "LONG_BINPUT")?;
                    self.memo.insert(k, t);
                }
                b'\x94' => {
                    let k = self.memo.len() as u64;
                    let t = self.top(at, "MEMOIZE")?;
                    self.memo.insert(k, t);
                }
                b'g' => {
                    let s = self.line_str("GET")?;
                    let k = s
                        .parse()
                        .map_err(|_| self.err(at, format!("bad GET key `{s}`")))?;
                    let id = self.memo_get(at, k)?;
                    self.stack.push(Some(id));
                }
                b'h' => {
                    let k = u64::from(self.u8("BINGET")?);
                    let id = self.memo_get(at, k)?;
                    self.stack.push(Some(id));
                }
                b'j' => {
                    let k = u64::from(self.u32("LONG_BINGET")?);
                    let id = self.memo_get(at, k)?;
                    self.stack.push(Some(id));
                }
                b'c' => {
                    let module = self.line_str("GLOBAL module")?.to_string();
                    let name = self.line_str("GLOBAL name")?.to_string();
                    self.push(Node::Global { module, name });
                }
                b'\x93' => {
                    let name = self.pop(at, "STACK_GLOBAL")?;
                    let module = self.pop(at, "STACK_GLOBAL")?;
                    match (&self.arena[module], &self.arena[name]) {
                        (Node::Str(m), Node::Str(n)) => {
                            let (module, name) = (m.clone(), n.clone());
                            self.push(Node::Global { module, name });
                        }
                        _ => return Err(self.err(at, "STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | b'\x81' => {
                    let args = self.pop(at, "REDUCE")?;
                    let callable = self.pop(at, "REDUCE")?;
                    let node = self.call(at, callable, args)?;
                    self.push(node);
                }
                b'b' => {
                    let state = self.pop(at, "BUILD")?;
                    let obj = self.top(at, "BUILD")?;
                    self.build(at, obj, state)?;
                }
                other => {
                    return Err(self.err(
                        at,
                        format!(
                            "unsupported pickle opcode 0x{other:02x} ({})",
                            opcode_name(other)
                        ),
                    ))
                }
            }
        }
    }

    /// REDUCE / NEWOBJ: recognizes the few callables numpy pickles use and
    /// records anything else as an opaque `Object` (never executed).
    fn call(&mut self, at: usize, callable: usize, args: usize) -> Result<Node, DataError> {
        let (module, name) = match &self.arena[callable] {
            Node::Global { module, name } => (module.as_str(), name.as_str()),
            _ => {
                return Ok(Node::Object {
                    callable,
                    args,
                    state: None,
                })
            }
        };
        let arg_items: Vec<usize> = match &self.arena[args] {
            Node::Tuple(v) => v.clone(),
            _ => return Err(self.err(at, "REDUCE arguments are not a tuple")),
        };
        let is_numpy_core = module.starts_with("numpy") && module.ends_with("multiarray");
        match (module, name) {
            (_, "_reconstruct") if is_numpy_core => Ok(Node::PendingArray),
            ("numpy", "dtype") => {
                let code = arg_items
                    .first()
                    .and_then(|i| match &self.arena[*i] {
                        Node::Str(s) => Some(s.clone()),
                        Node::Bytes(b) => Some(latin1(b)),
                        _ => None,
                    })
                    .ok_or_else(|| self.err(at, "numpy.dtype without a type code"))?;
                Ok(Node::Dtype { code, order: '=' })
            }
            // Python 3 pickles py2-compatible bytes as _codecs.encode(s, 'latin1').
            ("_codecs", "encode") => {
                let s = arg_items.first().map(|i| &self.arena[*i]);
                match s {
                    Some(Node::Str(s)) => {
                        let b = latin1_bytes(s)
                            .ok_or_else(|| self.err(at, "_codecs.encode of non-latin1 text"))?;
                        Ok(Node::Bytes(b))
                    }
                    _ => Err(self.err(at, "_codecs.encode without a string")),
                }
            }
            _ => Ok(Node::Object {
                callable,
                args,
                state: None,
            }),
        }
    }

    fn build(&mut self, at: usize, obj: usize, state: usize) -> Result<(), DataError> {
        match &self.arena[obj] {
            Node::PendingArray => {
                let arr = self.array_from_state(at, state)?;
                self.arena[obj] = arr;
            }
            Node::Dtype { code, .. } => {
                // dtype state: (version, byteorder, ...).
                let order = match &self.arena[state] {
                    Node::Tuple(items) => items.get(1).and_then(|i| match &self.arena[*i] {
                        Node::Str(s) => s.chars().next(),
                        _ => None,
                    }),
                    _ => None,
                }
                .ok_or_else(|| self.err(at, "numpy.dtype state without a byte order"))?;
                let code = code.clone();
                self.arena[obj] = Node::Dtype { code, order };
            }
            Node::Object { state: s, .. } if s.is_none() => {
                if let Node::Object { state: s, .. } = &mut self.arena[obj] {
                    *s = Some(state);
                }
            }
            _ => return Err(self.err(at, "BUILD on an object that does not take state")),
        }
        Ok(())
    }

    /// ndarray `__setstate__`: `(version, shape, dtype, is_fortran, rawdata)`
    /// (older numpy omits `version`).
    fn array_from_state(&self, at: usize, state: usize) -> Result<Node, DataError> {
        let items = match &self.arena[state] {
            Node::Tuple(v) => v.as_slice(),
            _ => return Err(self.err(at, "ndarray state is not a tuple")),
        };
        let items = match items.len() {
            5 => &items[1..],
            4 => items,
            k => return Err(self.err(at, format!("ndarray state has {k} items, expected 4 or 5"))),
        };
        let shape: Vec<usize> = match &self.arena[items[0]] {
            Node::Tuple(dims) => dims
                .iter()
                .map(|d| match &self.arena[*d] {
                    Node::Int(v) => usize::try_from(*v).ok(),
                    _ => None,
                })
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| self.err(at, "ndarray shape is not a tuple of non-negative ints"))?,
            _ => return Err(self.err(at, "ndarray shape is not a tuple")),
        };
        let descr = match &self.arena[items[1]] {
            Node::Dtype { code, order } => {
                let order = if *order == '=' || *order == '|' {
                    if code.ends_with('1') {
                        '|'
                    } else {
                        '='
                    }
                } else {
                    *order
                };
                format!("{order}{code}")
            }
            _ => return Err(self.err(at, "ndarray dtype is not a numpy.dtype")),
        };
        let fortran = match &self.arena[items[2]] {
            Node::Bool(b) => *b,
            Node::Int(v) => *v != 0,
            _ => return Err(self.err(at, "ndarray fortran flag is not a bool")),
        };
        let raw: Vec<u8> = match &self.arena[items[3]] {
            Node::Bytes(b) => b.clone(),
            Node::Str(s) => {
                latin1_bytes(s).ok_or_else(|| self.err(at, "ndarray data string is not latin1"))?
            }
            _ => {
                return Err(self.err(
                    at,
                    "ndarray data is not a byte string (object arrays are not supported)",
                ))
            }
        };
        let data = super::npy::convert(&descr, &raw, &shape, fortran, self.path)?;
        Ok(Node::NdArray { shape, data })
    }

    fn to_value(&self, id: usize, depth: usize) -> Result<PickleValue, DataError> {
        // A self-referencing container would recurse forever.
        if depth > 200 {
            return Err(DataError::format(
                self.path,
                "pickle nests deeper than 200 levels (recursive structure?)",
            ));
        }
        let seq = |v: &[usize]| -> Result<Vec<PickleValue>, DataError> {
            v.iter().map(|i| self.to_value(*i, depth + 1)).collect()
        };
        Ok(match &self.arena[id] {
            Node::None => PickleValue::None,
            Node::Bool(b) => PickleValue::Bool(*b),
            Node::Int(v) => PickleValue::Int(*v),
            Node::Float(v) => PickleValue::Float(*v),
            Node::Str(s) => PickleValue::Str(s.clone()),
            Node::Bytes(b) => PickleValue::Bytes(b.clone()),
            Node::List(v) => PickleValue::List(seq(v)?),
            Node::Tuple(v) => PickleValue::Tuple(seq(v)?),
            Node::Set(v) => PickleValue::Set(seq(v)?),
            Node::Dict(v) => PickleValue::Dict(
                v.iter()
                    .map(|(k, x)| {
                        Ok((self.to_value(*k, depth + 1)?, self.to_value(*x, depth + 1)?))
                    })
                    .collect::<Result<_, DataError>>()?,
            ),
            Node::Global { module, name } => PickleValue::Global {
                module: module.clone(),
                name: name.clone(),
            },
            Node::Dtype { code, order } => PickleValue::Dtype(format!("{order}{code}")),
            Node::PendingArray => {
                return Err(DataError::format(
                    self.path,
                    "numpy array was never given its state (missing BUILD)",
                ))
            }
            Node::NdArray { shape, data } => PickleValue::NdArray {
                shape: shape.clone(),
                data: data.clone(),
            },
            Node::Object {
                callable,
                args,
                state,
            } => PickleValue::Object {
                callable: Box::new(self.to_value(*callable, depth + 1)?),
                args: Box::new(self.to_value(*args, depth + 1)?),
                state: match state {
                    Some(s) => Some(Box::new(self.to_value(*s, depth + 1)?)),
                    None => None,
                },
            },
        })
    }
}

fn pairs_of(items: &[usize]) -> Option<Vec<(usize, usize)>> {
    let chunks = items.chunks_exact(2);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(chunks.map(|c| (c[0], c[1])).collect())
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|c| char::from(*c)).collect()
}

fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes the argument of protocol-0 STRING: a python 2 `repr()` of a byte
/// string, quoted with `'` or `"`, with backslash escapes.
fn unquote_python_string(l: &[u8]) -> Result<Vec<u8>, String> {
    let q = *l.first().ok_or("empty STRING argument")?;
    if !(q == b'\'' || q == b'"') || l.len() < 2 || l[l.len() - 1] != q {
        return Err("STRING argument is not quoted".into());
    }
    let body = &l[1..l.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1).ok_or("STRING ends with a lone backslash")?;
        i += 2;
        match e {
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\n' => {}
            b'x' => {
                let h = body.get(i).and_then(|c| hex_val(*c));
                let l = body.get(i + 1).and_then(|c| hex_val(*c));
                match (h, l) {
                    (Some(h), Some(l)) => out.push(h * 16 + l),
                    _ => return Err("bad \\x escape in STRING".into()),
                }
                i += 2;
            }
            b'0'..=b'7' => {
                // Up to three octal digits.
                let mut v = u32::from(e - b'0');
                let mut k = 0;
                while k < 2 {
                    match body.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                            k += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v & 0xff).unwrap_or(0));
            }
            other => {
                // Python keeps unknown escapes verbatim.
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Decodes protocol-0 UNICODE (`raw-unicode-escape`): `\uXXXX` and
/// `\UXXXXXXXX` escapes, every other byte is latin1.
fn raw_unicode_escape(l: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while i < l.len() {
        let c = l[i];
        let width = match (c, l.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let digits = l
            .get(i + 2..i + 2 + width)
            .ok_or("truncated \\u escape in UNICODE")?;
        let mut v = 0u32;
        for d in digits {
            v = v * 16 + u32::from(hex_val(*d).ok_or("bad \\u escape in UNICODE")?);
        }
        out.push(char::from_u32(v).ok_or("invalid code point in UNICODE")?);
        i += 2 + width;
    }
    Ok(out)
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'i' => "INST",
        b'o' => "OBJ",
        b'\x82' => "EXT1",
        b'\x83' => "EXT2",
        b'\x84' => "EXT4",
        b'\x92' => "NEWOBJ_EX",
        b'\x96' => "BYTEARRAY8",
        b'\x97' => "NEXT_BUFFER",
        b'\x98' => "READONLY_BUFFER",
        _ => "unknown",
    }
}

/// Reads a DCRNN `adj_mx.pkl`: `[sensor_ids, sensor_id_to_ind, adj_mx]` with
/// `adj_mx` a square float array. Node order is the order of `sensor_ids`.
pub fn read_dcrnn_adj(path: &Path) -> Result<Graph, DataError> {
    let v = read_pickle(path)?;
    let items = v.as_seq().ok_or_else(|| {
        DataError::format(
            path,
            format!(
                "expected [sensor_ids, sensor_id_to_ind, adj_mx], found a {}",
                v.kind()
            ),
        )
    })?;
    if items.len() != 3 {
        return Err(DataError::format(
            path,
            format!(
                "expected 3 items [sensor_ids, sensor_id_to_ind, adj_mx], found {}",
                items.len()
            ),
        ));
    }
    let ids: Vec<String> = items[0]
        .as_seq()
        .ok_or_else(|| {
            DataError::format(
                path,
                format!("sensor_ids is a {}, expected a list", items[0].kind()),
            )
        })?
        .iter()
        .map(|x| match x {
            PickleValue::Int(i) => Some(i.to_string()),
            other => other.as_text(),
        })
        .collect::<Option<_>>()
        .ok_or_else(|| DataError::format(path, "sensor_ids holds something other than strings"))?;
    let (shape, data) = match &items[2] {
        PickleValue::NdArray { shape, data } => (shape, data),
        other => {
            return Err(DataError::format(
                path,
                format!("adj_mx is a {}, expected a numpy array", other.kind()),
            ))
        }
    };
    if shape.len() != 2 || shape[0] != shape[1] {
        return Err(DataError::shape(
            path,
            format!("adj_mx has shape {shape:?}, expected a square matrix"),
        ));
    }
    let n = shape[0];
    if n == 0 {
        return Err(DataError::shape(path, "adj_mx is empty (0 nodes)"));
    }
    if ids.len() != n {
        return Err(DataError::shape(
            path,
            format!("{} sensor ids but adj_mx is {n}x{n}", ids.len()),
        ));
    }
    check_finite(path, data, &[n, n], &["row", "col"])?;
    Ok(Graph {
        n,
        adj: data.clone(),
        node_ids: Some(ids),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Minimal protocol-2 pickle writer for tests: emits the same structure
    /// DCRNN's files have (`[ids, {id: i}, ndarray]`), with binary opcodes.
    pub(crate) struct PickleWriter {
        pub out: Vec<u8>,
        memo: u8,
    }

    impl PickleWriter {
        pub fn new() -> Self {
            PickleWriter {
                out: vec![0x80, 2],
                memo: 0,
            }
        }
        fn put(&mut self) {
            self.out.push(b'q');
            self.out.push(self.memo);
            self.memo = self.memo.wrapping_add(1);
        }
        pub fn str(&mut self, s: &str) {
            self.out.push(b'X');
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            self.out.extend_from_slice(s.as_bytes());
            self.put();
        }
        pub fn int(&mut self, v: u32) {
            self.out.push(b'J');
            self.out.extend_from_slice(&v.to_le_bytes());
        }
        /// `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` + BUILD.
        pub fn ndarray_f4(&mut self, shape: &[usize], data: &[f32], as_bytes: bool) {
            self.out
                .extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\n");
            self.out.extend_from_slice(b"cnumpy\nndarray\n");
            self.out.extend_from_slice(b"K\x00\x85");
            self.out.extend_from_slice(b"C\x01b\x87R");
            // state: (1, shape, dtype, False, raw)
            self.out.extend_from_slice(b"(K\x01");
            self.out.push(b'(');
            for d in shape {
                self.int(*d as u32);
            }
            self.out.push(b't');
            self.out
                .extend_from_slice(b"cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R");
            self.out
                .extend_from_slice(b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
            self.out.push(b'\x89');
            let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            if as_bytes {
                self.out.push(b'B');
            } else {
                self.out.push(b'T');
            }
            self.out
                .extend_from_slice(&(raw.len() as u32).to_le_bytes());
            self.out.extend_from_slice(&raw);
            self.out.extend_from_slice(b"tb");
        }
        /// A whole DCRNN-style `[ids, {id: i}, adj]` pickle.
        pub fn dcrnn(ids: &[&str], adj: &[f32], as_bytes: bool) -> Vec<u8> {
            let mut w = PickleWriter::new();
            w.out.extend_from_slice(b"]q\x00(");
            w.memo = 1;
            w.out.push(b']');
            w.put();
            w.out.push(b'(');
            for id in ids {
                w.str(id);
            }
            w.out.push(b'e');
            w.out.push(b'}');
            w.put();
            w.out.push(b'(');
            for i in 0..ids.len() {
                // Reuse the memoized id strings (memo 2.. hold them) via BINGET.
                w.out.push(b'h');
                w.out.push((i + 2) as u8);
                w.int(i as u32);
            }
            w.out.push(b'u');
            w.ndarray_f4(&[ids.len(), ids.len()], adj, as_bytes);
            w.out.extend_from_slice(b"e.");
            w.out
        }
    }

    #[test]
    fn protocol2_roundtrip_with_memo_and_array() {
        let adj = [1.0f32, 0.5, 0.0, 0.25, 1.0, 0.0, 0.0, 0.75, 1.0];
        for as_bytes in [false, true] {
            let b = PickleWriter::dcrnn(&["a", "bb", "c"], &adj, as_bytes);
            let v = parse_pickle(&b, Path::new("t.pkl")).unwrap();
            let items = v.as_seq().unwrap();
            assert_eq!(items.len(), 3);
            assert_eq!(
                items[0],
                PickleValue::List(vec![
                    PickleValue::Str("a".into()),
                    PickleValue::Str("bb".into()),
                    PickleValue::Str("c".into())
                ])
            );
            match &items[1] {
                PickleValue::Dict(d) => {
                    assert_eq!(d[1], (PickleValue::Str("bb".into()), PickleValue::Int(1)))
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                items[2],
                PickleValue::NdArray {
                    shape: vec![3, 3],
                    data: adj.to_vec()
                }
            );
        }
    }

    #[test]
    fn protocol0_strings_and_memo_by_reference() {
        // (lp0\n S'a\'\\x80' \n p1\n a g0\n ... : list memoized, then appended to,
        // then fetched again through GET: the fetched list must see the append.
        let src = b"(lp0\nS'a\\'\\x80\\n'\np1\naI00\naL12L\nag0\na.";
        let v = parse_pickle(src, Path::new("p0.pkl"));
        // The list contains itself via g0 => recursion guard, reported as Format.
        assert!(matches!(v, Err(DataError::Format { .. })), "{v:?}");
        let src = b"(lp0\nS'a\\'\\x80\\n'\np1\naI00\naL12L\naF1.5\na(g1\ntp2\na.";
        let v = parse_pickle(src, Path::new("p0.pkl")).unwrap();
        assert_eq!(
            v,
            PickleValue::List(vec![
                PickleValue::Str("a'\u{80}\n".into()),
                PickleValue::Bool(false),
                PickleValue::Int(12),
                PickleValue::Float(1.5),
                PickleValue::Tuple(vec![PickleValue::Str("a'\u{80}\n".into())]),
            ])
        );
        assert_eq!(
            unquote_python_string(b"\"it's\\t\\101\"").unwrap(),
            b"it's\tA".to_vec()
        );
    }

    #[test]
    fn unknown_opcode_and_truncation() {
        let e = parse_pickle(b"(lp0\nP1\n.", Path::new("bad.pkl")).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, DataError::Format { .. }));
        assert!(
            s.contains("bad.pkl") && s.contains("byte 5") && s.contains("0x50"),
            "{s}"
        );

        let b = PickleWriter::dcrnn(&["a", "b"], &[1.0, 0.0, 0.0, 1.0], true);
        for cut in [1usize, 10, b.len() - 20, b.len() - 1] {
            let e = parse_pickle(&b[..cut], Path::new("cut.pkl")).unwrap_err();
            assert!(matches!(e, DataError::Truncated { .. }), "cut {cut}: {e}");
            assert!(e.to_string().contains("cut.pkl"));
        }
    }

    #[test]
    fn dcrnn_adj_validation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("adj.pkl");
        std::fs::write(
            &p,
            PickleWriter::dcrnn(&["7", "9"], &[1.0, 0.5, 0.5, 1.0], false),
        )
        .unwrap();
        let g = read_dcrnn_adj(&p).unwrap();
        assert_eq!(g.n, 2);
        assert_eq!(g.node_ids, Some(vec!["7".to_string(), "9".to_string()]));
        assert_eq!(g.adj, vec![1.0, 0.5, 0.5, 1.0]);
        std::fs::write(
            &p,
            PickleWriter::dcrnn(&["7", "9"], &[1.0, f32::NAN, 0.5, 1.0], false),
        )
        .unwrap();
        let e = read_dcrnn_adj(&p).unwrap_err();
        assert!(matches!(e, DataError::NonFinite { .. }) && e.to_string().contains("row 0, col 1"));
    }
}
