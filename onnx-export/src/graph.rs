//! A small builder over tract's prost ONNX types: named values, nodes,
//! initialisers, and a finished `ModelProto` encoded to bytes.

use prost::Message;
use tract_onnx::pb::{
    self, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    type_proto,
};

/// The opset the writer targets: ≥ 13 as tract and onnxruntime both run it,
/// and the first where `Resize` takes `scales` without `roi` ambiguity.
pub const OPSET: i64 = 13;
/// IR version 7 goes with opset 13 (onnx's version table).
pub const IR_VERSION: i64 = 7;

/// Element types the writer emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    U8,
    I8,
    I32,
    I64,
}

impl Elem {
    fn code(self) -> i32 {
        (match self {
            Elem::F32 => DataType::Float,
            Elem::U8 => DataType::Uint8,
            Elem::I8 => DataType::Int8,
            Elem::I32 => DataType::Int32,
            Elem::I64 => DataType::Int64,
        }) as i32
    }
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(&'static str),
}

/// A graph under construction.
#[derive(Debug, Default)]
pub struct Graph {
    proto: pb::GraphProto,
    next: usize,
}

impl Graph {
    pub fn new(name: &str) -> Self {
        Graph {
            proto: pb::GraphProto {
                name: name.into(),
                ..Default::default()
            },
            next: 0,
        }
    }

    /// Declares a graph input of fixed shape.
    pub fn input(&mut self, name: &str, elem: Elem, shape: &[i64]) -> String {
        self.proto.input.push(value_info(name, elem, shape));
        name.into()
    }

    /// Declares `value` (already produced by a node) as a graph output.
    pub fn output(&mut self, value: &str, elem: Elem, shape: &[i64]) {
        self.proto.output.push(value_info(value, elem, shape));
    }

    /// Adds a constant tensor, returns its name.
    pub fn f32s(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw(name, Elem::F32, dims, raw)
    }

    pub fn u8s(&mut self, name: &str, dims: &[i64], data: &[u8]) -> String {
        self.raw(name, Elem::U8, dims, data.to_vec())
    }

    pub fn i8s(&mut self, name: &str, dims: &[i64], data: &[i8]) -> String {
        self.raw(
            name,
            Elem::I8,
            dims,
            data.iter().map(|&v| v as u8).collect(),
        )
    }

    pub fn i32s(&mut self, name: &str, dims: &[i64], data: &[i32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw(name, Elem::I32, dims, raw)
    }

    pub fn i64s(&mut self, name: &str, dims: &[i64], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw(name, Elem::I64, dims, raw)
    }

    fn raw(&mut self, name: &str, elem: Elem, dims: &[i64], raw: Vec<u8>) -> String {
        self.proto.initializer.push(pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: elem.code(),
            raw_data: raw,
            ..Default::default()
        });
        name.into()
    }

    /// Adds a node with one output named `out` (or a fresh name when empty).
    pub fn node(&mut self, op: &str, inputs: &[&str], out: &str, attrs: &[(&str, Attr)]) -> String {
        let out = if out.is_empty() {
            self.next += 1;
            format!("{}_{}", op.to_lowercase(), self.next)
        } else {
            out.to_string()
        };
        self.proto.node.push(pb::NodeProto {
            name: out.clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs.iter().map(|(n, a)| attribute(n, a)).collect(),
            ..Default::default()
        });
        out
    }

    /// The finished model.
    pub fn model(self, doc: &str) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "nemascope".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(self.proto),
            ..Default::default()
        }
    }
}

/// The model as ONNX protobuf bytes.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

fn value_info(name: &str, elem: Elem, shape: &[i64]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem.code(),
                shape: Some(pb::TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| pb::tensor_shape_proto::Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attribute(name: &str, a: &Attr) -> pb::AttributeProto {
    let mut p = pb::AttributeProto {
        name: name.into(),
        ..Default::default()
    };
    match a {
        Attr::Int(v) => {
            p.r#type = AttributeType::Int as i32;
            p.i = *v;
        }
        Attr::Ints(v) => {
            p.r#type = AttributeType::Ints as i32;
            p.ints = v.clone();
        }
        Attr::Float(v) => {
            p.r#type = AttributeType::Float as i32;
            p.f = *v;
        }
        Attr::Str(v) => {
            p.r#type = AttributeType::String as i32;
            p.s = v.as_bytes().to_vec();
        }
    }
    p
}
