//! Why a policy file was rejected: every message says where and what to fix.

use std::path::PathBuf;

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{DeviceClass, Zone};

/// Why a policy file was rejected. Every message says where and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("{}: cannot read the policy file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not TOML, or a key or value does not fit the policy format.
    #[error("{}: {message}", location(origin, *line, *column))]
    Syntax {
        /// The file name (`"policy"` for text given directly).
        origin: String,
        /// 1-based line of the fault, when known.
        line: Option<usize>,
        /// 1-based column of the fault, when known.
        column: Option<usize>,
        /// What is wrong, as the TOML parser puts it.
        message: String,
    },
    /// The file is well-formed but a value is not acceptable.
    #[error("{origin} line {line}: {fault}")]
    Invalid {
        /// The file name (`"policy"` for text given directly).
        origin: String,
        /// 1-based line of the fault.
        line: usize,
        /// What is wrong and how to fix it.
        fault: Fault,
    },
}

impl PolicyError {
    /// The 1-based line at fault, if the error has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Read { .. } => None,
            PolicyError::Syntax { line, .. } => *line,
            PolicyError::Invalid { line, .. } => Some(*line),
        }
    }
}

fn location(origin: &str, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{origin} line {l}, column {c}"),
        (Some(l), None) => format!("{origin} line {l}"),
        _ => origin.to_owned(),
    }
}

/// A value of a well-formed policy file that is not acceptable, naming the key and the fix.
///
/// `key` fields name the setting as written, such as `[classes] home` or
/// `operator "op-1": cap_mm`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Fault {
    /// `mechanical_max_mm` is zero, negative, infinite or NaN.
    #[error("mechanical_max_mm = {mm:?} must be a positive number of millimetres")]
    MechanicalMax {
        /// The value written.
        mm: f64,
    },
    /// A lowered `mechanical_max_mm` is below a default the file does not override.
    #[error(
        "mechanical_max_mm = {mechanical_max_mm:?} is below the default {key} of {default_mm:?} \
         mm; raise mechanical_max_mm or set {key} to at most {mechanical_max_mm:?}"
    )]
    BelowDefault {
        /// The value written for `mechanical_max_mm`.
        mechanical_max_mm: f64,
        /// The defaulted setting.
        key: String,
        /// Its default (mm).
        default_mm: f64,
    },
    /// A depth limit is NaN.
    #[error("{key} is not a number; give a depth in millimetres, such as 1.0")]
    NotANumber {
        /// The setting.
        key: String,
    },
    /// A depth limit is zero or negative.
    #[error("{key} = {mm:?} must be above 0 mm")]
    NotAboveZero {
        /// The setting.
        key: String,
        /// The value written.
        mm: f64,
    },
    /// A depth limit is above the mechanical maximum.
    #[error(
        "{key} = {mm:?} mm is above mechanical_max_mm = {mechanical_max_mm:?} mm; \
         lower it (or raise mechanical_max_mm)"
    )]
    AboveMechanicalMax {
        /// The setting.
        key: String,
        /// The value written.
        mm: f64,
        /// The mechanical maximum in force.
        mechanical_max_mm: f64,
    },
    /// An operator, device, clinic or qualification id is not a valid id.
    #[error(
        "{key} {id:?} is not a valid id: use 1 to 64 printable ASCII characters, \
         without spaces, '/', '+' or '#'"
    )]
    InvalidId {
        /// What the id names.
        key: String,
        /// The id written.
        id: String,
    },
    /// A `[classes]` key is not a device class.
    #[error(
        "[classes]: unknown device class {name:?} (expected: {})",
        DeviceClass::expected()
    )]
    UnknownClass {
        /// The key written.
        name: String,
    },
    /// A class is set twice in `[classes]`.
    #[error("[classes]: class {class:?} is set twice (also at line {first}); keep one")]
    ClassTwice {
        /// The class's short name.
        class: String,
        /// Line of the first setting.
        first: usize,
    },
    /// A `[cartridge_models]` key is empty.
    #[error("[cartridge_models]: a model name is empty; name the model")]
    EmptyCartridgeModel,
    /// A cartridge model is rated for 0 strokes.
    #[error(
        "[cartridge_models]: model {model:?} has a rated life of 0 strokes; \
         give the manufacturer's rated stroke count (at least 1)"
    )]
    ZeroRatedStrokes {
        /// The model.
        model: String,
    },
    /// An operator's qualification is not in `[qualifications]`.
    #[error(
        "operator {operator:?}: qualification {qualification:?} is not defined in \
         [qualifications] (defined: {defined})"
    )]
    UndefinedQualification {
        /// The operator's staff id.
        operator: String,
        /// The qualification written.
        qualification: String,
        /// The qualifications defined, comma-separated.
        defined: String,
    },
    /// An operator's personal cap is above their qualification's limit.
    #[error(
        "operator {operator:?}: cap_mm = {cap_mm:?} is above the {qualification_max_mm:?} mm \
         of qualification {qualification:?}; a personal cap can only lower the limit: \
         lower cap_mm or remove it"
    )]
    CapAboveQualification {
        /// The operator's staff id.
        operator: String,
        /// The cap written.
        cap_mm: f64,
        /// The operator's qualification.
        qualification: String,
        /// Its maximum (mm).
        qualification_max_mm: f64,
    },
    /// An operator is listed twice for the same clinic.
    #[error(
        "operator {operator:?} of clinic {clinic:?} is listed twice (first at line {first}); \
         keep one entry"
    )]
    OperatorTwice {
        /// The operator's staff id.
        operator: String,
        /// The clinic.
        clinic: String,
        /// Line of the first entry.
        first: usize,
    },
    /// A device's class is not a device class.
    #[error(
        "device {device:?}: unknown class {class:?} (expected: {})",
        DeviceClass::expected()
    )]
    UnknownDeviceClass {
        /// The pen serial.
        device: String,
        /// The class written.
        class: String,
    },
    /// A device is listed twice for the same clinic.
    #[error(
        "device {device:?} of clinic {clinic:?} is listed twice (first at line {first}); \
         keep one entry"
    )]
    DeviceTwice {
        /// The pen serial.
        device: String,
        /// The clinic.
        clinic: String,
        /// Line of the first entry.
        first: usize,
    },
    /// A `[zones.CLINIC]` key is not a zone.
    #[error(
        "[zones.{clinic}]: unknown zone {name:?} (expected: {})",
        Zone::expected()
    )]
    UnknownZone {
        /// The clinic.
        clinic: String,
        /// The key written.
        name: String,
    },
    /// A zone is set twice for the same clinic.
    #[error("[zones.{clinic}]: zone {zone:?} is set twice (also at line {first}); keep one")]
    ZoneTwice {
        /// The clinic.
        clinic: String,
        /// The zone's short name.
        zone: String,
        /// Line of the first setting.
        first: usize,
    },
    /// A `[clinics.CLINIC]` jurisdiction is not one the gateway knows.
    #[error(
        "[clinics.{clinic}]: unknown jurisdiction {name:?} (expected: {})",
        crate::policy::Jurisdiction::expected()
    )]
    UnknownJurisdiction {
        /// The clinic.
        clinic: String,
        /// The value written.
        name: String,
    },
}
