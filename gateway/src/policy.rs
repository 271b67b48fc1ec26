//! Depth policy: which needle protrusion each sample is permitted, and why.
//!
//! A [`Policy`] is one validated, immutable version of the policy file (format:
//! `gateway/policy.example.toml`). For every sample,
//! `permitted = min(class max, operator max, zone max, out_of_range_mm)`; the rule that set
//! the minimum is the binding [`Rule`], ties going to the first of class, operator, zone,
//! out of range. Defaults are those of the domain brief (`/work/shared/domain.md`).

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};

use penwatch_proto::names::ShortName;
use penwatch_proto::topic::is_valid_id;
use penwatch_proto::v1::{DeviceClass, Zone};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};
use toml::Spanned;

/// Default depth above which a sample is out of the clinical range (mm).
const DEFAULT_OUT_OF_RANGE_MM: f64 = 2.5;
/// Default mechanical maximum of a pen (mm); above it a depth is invalid telemetry.
const DEFAULT_MECHANICAL_MAX_MM: f64 = 3.0;
/// Default maximum depth per device class (mm).
const DEFAULT_CLASSES: [(DeviceClass, f64); 3] = [
    (DeviceClass::Home, 0.5),
    (DeviceClass::Salon, 1.0),
    (DeviceClass::Medical, 2.5),
];
/// Default maximum depth per operator qualification (mm).
const DEFAULT_QUALIFICATIONS: [(&str, f64); 4] = [
    ("trainee", 0.5),
    ("aesthetic_practitioner", 1.0),
    ("advanced_practitioner", 1.5),
    ("clinician", 2.5),
];
/// Name used for the policy text in errors when it does not come from a file.
const TEXT_ORIGIN: &str = "policy";

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
    #[error("{origin} line {line}: {message}")]
    Invalid {
        /// The file name (`"policy"` for text given directly).
        origin: String,
        /// 1-based line of the fault.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
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

/// The rule that set a sample's permitted depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The device class maximum.
    Class,
    /// The operator's qualification maximum or personal cap.
    Operator,
    /// The clinic's ceiling for the treatment zone.
    Zone,
    /// The out-of-range threshold (`out_of_range_mm`).
    OutOfRange,
}

impl Rule {
    /// The name used in records and reports: `"class"`, `"operator"`, `"zone"`, `"out_of_range"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Class => "class",
            Rule::Operator => "operator",
            Rule::Zone => "zone",
            Rule::OutOfRange => "out_of_range",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy needs to know about one sample.
#[derive(Debug, Clone, Copy)]
pub struct SampleContext<'a> {
    /// Clinic the pen publishes for.
    pub clinic_id: &'a str,
    /// Pen serial.
    pub device_id: &'a str,
    /// Class the pen claims.
    pub claimed_class: DeviceClass,
    /// Staff id of the operator (empty if none is reported).
    pub operator_id: &'a str,
    /// Treatment zone, where reported.
    pub zone: Option<Zone>,
    /// Set needle protrusion in mm; expected valid (0 to mechanical maximum).
    pub depth_mm: f64,
}

/// The policy's verdict on one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// Permitted depth for this sample (mm).
    pub permitted_mm: f64,
    /// The rule that set `permitted_mm`.
    pub binding: Rule,
    /// Effective class: the registered class if the device is registered, else the claimed
    /// one (`Unspecified` when an unregistered pen claims none).
    pub class: DeviceClass,
    /// Whether the depth is above the permitted depth (equal is not exceeded; 0 never is).
    pub exceeded: bool,
    /// The operator id is empty or not listed for this clinic.
    pub unknown_operator: bool,
    /// The device is not registered for this clinic.
    pub unregistered_device: bool,
    /// The pen claims a class other than its registered one.
    pub class_mismatch: bool,
}

/// A known operator of a clinic.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// Clinic id.
    pub clinic: String,
    /// Staff id.
    pub id: String,
    /// Qualification name (a key of `[qualifications]`).
    pub qualification: String,
    /// The qualification's maximum depth (mm).
    pub qualification_max_mm: f64,
    /// Personal cap (mm), at most the qualification's maximum.
    pub cap_mm: Option<f64>,
}

impl Operator {
    /// The operator's permitted maximum: the personal cap if set, else the qualification's.
    pub fn max_mm(&self) -> f64 {
        self.cap_mm.map_or(self.qualification_max_mm, |c| {
            c.min(self.qualification_max_mm)
        })
    }
}

/// A registered device of a clinic.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Clinic id.
    pub clinic: String,
    /// Pen serial.
    pub id: String,
    /// Registered class (wins over the class the pen claims).
    pub class: DeviceClass,
}

/// A validated, immutable version of the depth policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    version: String,
    text: String,
    out_of_range_mm: f64,
    mechanical_max_mm: f64,
    classes: Vec<(DeviceClass, f64)>,
    qualifications: Vec<(String, f64)>,
    cartridge_models: Vec<(String, u64)>,
    operators: Vec<Operator>,
    operator_index: HashMap<String, HashMap<String, usize>>,
    devices: Vec<Device>,
    device_index: HashMap<String, HashMap<String, usize>>,
    zones: HashMap<String, Vec<(Zone, f64)>>,
}

impl Policy {
    /// Parses and validates policy TOML text; errors are located as `policy line N`.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        parse_with_origin(text, TEXT_ORIGIN)
    }

    /// Reads and validates a policy file; errors name the file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse_with_origin(&text, &path.display().to_string())
    }

    /// The file text this version was parsed from ("" for the defaults).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The domain defaults, with no operators, devices, zones or cartridge models (the
    /// policy of an empty file).
    pub fn defaults() -> Policy {
        Policy {
            version: version_of(""),
            text: String::new(),
            out_of_range_mm: DEFAULT_OUT_OF_RANGE_MM,
            mechanical_max_mm: DEFAULT_MECHANICAL_MAX_MM,
            classes: DEFAULT_CLASSES.to_vec(),
            qualifications: DEFAULT_QUALIFICATIONS
                .iter()
                .map(|(n, v)| ((*n).to_owned(), *v))
                .collect(),
            cartridge_models: Vec::new(),
            operators: Vec::new(),
            operator_index: HashMap::new(),
            devices: Vec::new(),
            device_index: HashMap::new(),
            zones: HashMap::new(),
        }
    }

    /// Version id: the first 12 hex digits of the SHA-256 of the file text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Judges one sample: permitted depth, binding rule, effective class and flags.
    pub fn judge(&self, s: &SampleContext<'_>) -> Judgement {
        let device = self.device(s.clinic_id, s.device_id);
        let (class, class_mm) = match device {
            Some(d) => (d.class, self.class_max_mm(d.class)),
            None => (s.claimed_class, self.class_max_mm(s.claimed_class)),
        };
        let class_mm = class_mm.unwrap_or_else(|| self.most_restrictive_class_mm());
        let operator = self.operator(s.clinic_id, s.operator_id);
        let operator_mm = operator.map_or_else(
            || self.most_restrictive_qualification_mm(),
            Operator::max_mm,
        );
        let zone_mm = s.zone.and_then(|z| self.zone_max_mm(s.clinic_id, z));

        let mut permitted_mm = class_mm;
        let mut binding = Rule::Class;
        let candidates = [
            (Rule::Operator, Some(operator_mm)),
            (Rule::Zone, zone_mm),
            (Rule::OutOfRange, Some(self.out_of_range_mm)),
        ];
        for (rule, limit) in candidates {
            if let Some(limit) = limit
                && limit < permitted_mm
            {
                permitted_mm = limit;
                binding = rule;
            }
        }

        Judgement {
            permitted_mm,
            binding,
            class,
            exceeded: s.depth_mm > 0.0 && s.depth_mm > permitted_mm,
            unknown_operator: operator.is_none(),
            unregistered_device: device.is_none(),
            class_mismatch: device.is_some_and(|d| {
                s.claimed_class != DeviceClass::Unspecified && s.claimed_class != d.class
            }),
        }
    }

    /// Depth above which a reported depth is invalid telemetry (mm).
    pub fn mechanical_max_mm(&self) -> f64 {
        self.mechanical_max_mm
    }

    /// Depth above which a sample is out of the clinical range, whatever the limits (mm).
    pub fn out_of_range_mm(&self) -> f64 {
        self.out_of_range_mm
    }

    /// Maximum depth of a device class (`None` for `Unspecified`).
    pub fn class_max_mm(&self, class: DeviceClass) -> Option<f64> {
        self.classes
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, mm)| *mm)
    }

    /// Qualifications and their maximum depth (mm): the defaults, then the file's additions.
    pub fn qualifications(&self) -> impl Iterator<Item = (&str, f64)> {
        self.qualifications.iter().map(|(n, mm)| (n.as_str(), *mm))
    }

    /// Ceiling a clinic set for a zone (mm), if any.
    pub fn zone_max_mm(&self, clinic_id: &str, zone: Zone) -> Option<f64> {
        self.zones
            .get(clinic_id)?
            .iter()
            .find(|(z, _)| *z == zone)
            .map(|(_, mm)| *mm)
    }

    /// Rated stroke life of a cartridge model (exact name match).
    pub fn rated_strokes(&self, cartridge_model: &str) -> Option<u64> {
        self.cartridge_models
            .iter()
            .find(|(m, _)| m == cartridge_model)
            .map(|(_, n)| *n)
    }

    /// Known operators, in file order.
    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    /// The operator with this staff id at this clinic, if known.
    pub fn operator(&self, clinic_id: &str, operator_id: &str) -> Option<&Operator> {
        let i = self.operator_index.get(clinic_id)?.get(operator_id)?;
        self.operators.get(*i)
    }

    /// Registered devices, in file order.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The device registered with this serial at this clinic, if any.
    pub fn device(&self, clinic_id: &str, device_id: &str) -> Option<&Device> {
        let i = self.device_index.get(clinic_id)?.get(device_id)?;
        self.devices.get(*i)
    }

    fn most_restrictive_class_mm(&self) -> f64 {
        self.classes
            .iter()
            .map(|(_, mm)| *mm)
            .fold(f64::INFINITY, f64::min)
    }

    fn most_restrictive_qualification_mm(&self) -> f64 {
        self.qualifications
            .iter()
            .map(|(_, mm)| *mm)
            .fold(f64::INFINITY, f64::min)
    }
}

fn version_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(12);
    hex
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    out_of_range_mm: Option<Spanned<f64>>,
    mechanical_max_mm: Option<Spanned<f64>>,
    #[serde(default)]
    classes: Entries<f64>,
    #[serde(default)]
    qualifications: Entries<f64>,
    #[serde(default)]
    cartridge_models: Entries<u64>,
    #[serde(default)]
    operators: Vec<RawOperator>,
    #[serde(default)]
    devices: Vec<RawDevice>,
    #[serde(default)]
    zones: Entries<Entries<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    id: Spanned<String>,
    clinic: Spanned<String>,
    qualification: Spanned<String>,
    cap_mm: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: Spanned<String>,
    clinic: Spanned<String>,
    class: Spanned<String>,
}

/// A TOML table in file order, with the span of every key and value.
struct Entries<V>(Vec<(Spanned<String>, Spanned<V>)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                // The parser may hand keys over sorted; restore the order of the file.
                entries.sort_by_key(|(k, _): &(Spanned<String>, Spanned<V>)| k.span().start);
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

// ---- validation ----

/// Turns byte spans of the text into located errors.
struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Checker<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: &Range<usize>, message: String) -> PolicyError {
        PolicyError::Invalid {
            origin: self.origin.to_owned(),
            line: self.line(span),
            message,
        }
    }

    fn syntax(&self, e: &toml::de::Error) -> PolicyError {
        let (line, column) = match e.span() {
            Some(span) => {
                let start = span.start.min(self.text.len());
                let bytes = &self.text.as_bytes()[..start];
                let line_start = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let column = self
                    .text
                    .get(line_start..start)
                    .map_or(start - line_start, |s| s.chars().count());
                (Some(self.line(&span)), Some(column + 1))
            }
            None => (None, None),
        };
        PolicyError::Syntax {
            origin: self.origin.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    }

    /// Checks a limit written in the file: a number above 0 and at most the mechanical maximum.
    fn limit(
        &self,
        what: &str,
        value: &Spanned<f64>,
        mechanical_max_mm: f64,
    ) -> Result<f64, PolicyError> {
        let mm = *value.get_ref();
        if mm.is_nan() {
            return Err(self.err(
                &value.span(),
                format!("{what} is not a number; give a depth in millimetres, such as 1.0"),
            ));
        }
        if mm <= 0.0 {
            return Err(self.err(&value.span(), format!("{what} = {mm:?} must be above 0 mm")));
        }
        if mm > mechanical_max_mm {
            return Err(self.err(
                &value.span(),
                format!(
                    "{what} = {mm:?} mm is above mechanical_max_mm = {mechanical_max_mm:?} mm; \
                     lower it (or raise mechanical_max_mm)"
                ),
            ));
        }
        Ok(mm)
    }

    fn id(&self, what: &str, value: &Spanned<String>) -> Result<String, PolicyError> {
        let id = value.get_ref();
        if is_valid_id(id) {
            Ok(id.clone())
        } else {
            Err(self.err(
                &value.span(),
                format!(
                    "{what} {id:?} is not a valid id: use 1 to 64 printable ASCII characters, \
                     without spaces, '/', '+' or '#'"
                ),
            ))
        }
    }
}

fn parse_with_origin(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let c = Checker { text, origin };
    let raw: RawPolicy = toml::from_str(text).map_err(|e| c.syntax(&e))?;

    // Global thresholds.
    let (mechanical_max_mm, mechanical_span) = match &raw.mechanical_max_mm {
        Some(v) => {
            let mm = *v.get_ref();
            if !(mm.is_finite() && mm > 0.0) {
                return Err(c.err(
                    &v.span(),
                    format!("mechanical_max_mm = {mm:?} must be a positive number of millimetres"),
                ));
            }
            (mm, Some(v.span()))
        }
        None => (DEFAULT_MECHANICAL_MAX_MM, None),
    };
    // A default that does not fit under a lowered mechanical maximum is blamed on the latter.
    let default_fits = |what: &str, mm: f64| -> Result<(), PolicyError> {
        match &mechanical_span {
            Some(span) if mm > mechanical_max_mm => Err(c.err(
                span,
                format!(
                    "mechanical_max_mm = {mechanical_max_mm:?} is below the default {what} of \
                     {mm:?} mm; raise mechanical_max_mm or set {what} to at most {mechanical_max_mm:?}"
                ),
            )),
            _ => Ok(()),
        }
    };
    let out_of_range_mm = match &raw.out_of_range_mm {
        Some(v) => c.limit("out_of_range_mm", v, mechanical_max_mm)?,
        None => {
            default_fits("out_of_range_mm", DEFAULT_OUT_OF_RANGE_MM)?;
            DEFAULT_OUT_OF_RANGE_MM
        }
    };

    // Classes: defaults, overridden key by key.
    let mut classes = DEFAULT_CLASSES.to_vec();
    let mut class_lines: Vec<(DeviceClass, usize)> = Vec::new();
    for (name, value) in &raw.classes.0 {
        let Some(class) = DeviceClass::parse_name(name.get_ref()) else {
            return Err(c.err(
                &name.span(),
                format!(
                    "[classes]: unknown device class {:?} (expected: {})",
                    name.get_ref(),
                    DeviceClass::expected()
                ),
            ));
        };
        if let Some((_, first)) = class_lines.iter().find(|(k, _)| *k == class) {
            return Err(c.err(
                &name.span(),
                format!(
                    "[classes]: class {:?} is set twice (also at line {first}); keep one",
                    class.short_name()
                ),
            ));
        }
        class_lines.push((class, c.line(&name.span())));
        let mm = c.limit(
            &format!("[classes] {}", class.short_name()),
            value,
            mechanical_max_mm,
        )?;
        if let Some(slot) = classes.iter_mut().find(|(k, _)| *k == class) {
            slot.1 = mm;
        }
    }
    for (class, mm) in DEFAULT_CLASSES {
        if !class_lines.iter().any(|(k, _)| *k == class) {
            default_fits(&format!("[classes] {}", class.short_name()), mm)?;
        }
    }

    // Qualifications: defaults, overridden or extended key by key.
    let mut qualifications: Vec<(String, f64)> = DEFAULT_QUALIFICATIONS
        .iter()
        .map(|(n, mm)| ((*n).to_owned(), *mm))
        .collect();
    for (name, value) in &raw.qualifications.0 {
        let name = c.id("[qualifications]: qualification name", name)?;
        let mm = c.limit(
            &format!("[qualifications] {name}"),
            value,
            mechanical_max_mm,
        )?;
        match qualifications.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = mm,
            None => qualifications.push((name, mm)),
        }
    }
    for (name, mm) in DEFAULT_QUALIFICATIONS {
        if !raw
            .qualifications
            .0
            .iter()
            .any(|(n, _)| n.get_ref() == name)
        {
            default_fits(&format!("[qualifications] {name}"), mm)?;
        }
    }

    // Cartridge models.
    let mut cartridge_models = Vec::new();
    for (model, strokes) in &raw.cartridge_models.0 {
        if model.get_ref().trim().is_empty() {
            return Err(c.err(
                &model.span(),
                "[cartridge_models]: a model name is empty; name the model".to_owned(),
            ));
        }
        if *strokes.get_ref() == 0 {
            return Err(c.err(
                &strokes.span(),
                format!(
                    "[cartridge_models]: model {:?} has a rated life of 0 strokes; \
                     give the manufacturer's rated stroke count (at least 1)",
                    model.get_ref()
                ),
            ));
        }
        cartridge_models.push((model.get_ref().clone(), *strokes.get_ref()));
    }

    // Operators.
    let mut operators = Vec::new();
    let mut operator_index: HashMap<String, HashMap<String, usize>> = HashMap::new();
    let mut operator_lines: HashMap<(String, String), usize> = HashMap::new();
    for raw_op in &raw.operators {
        let id = c.id("operator id", &raw_op.id)?;
        let what = format!("operator {id:?}");
        let clinic = c.id(&format!("{what}: clinic"), &raw_op.clinic)?;
        let qualification = raw_op.qualification.get_ref();
        let Some((_, qualification_max_mm)) =
            qualifications.iter().find(|(n, _)| n == qualification)
        else {
            let defined: Vec<&str> = qualifications.iter().map(|(n, _)| n.as_str()).collect();
            return Err(c.err(
                &raw_op.qualification.span(),
                format!(
                    "{what}: qualification {qualification:?} is not defined in [qualifications] \
                     (defined: {})",
                    defined.join(", ")
                ),
            ));
        };
        let qualification_max_mm = *qualification_max_mm;
        let cap_mm = match &raw_op.cap_mm {
            Some(cap) => {
                let mm = c.limit(&format!("{what}: cap_mm"), cap, mechanical_max_mm)?;
                if mm > qualification_max_mm {
                    return Err(c.err(
                        &cap.span(),
                        format!(
                            "{what}: cap_mm = {mm:?} is above the {qualification_max_mm:?} mm of \
                             qualification {qualification:?}; a personal cap can only lower the \
                             limit: lower cap_mm or remove it"
                        ),
                    ));
                }
                Some(mm)
            }
            None => None,
        };
        let line = c.line(&raw_op.id.span());
        if let Some(first) = operator_lines.insert((clinic.clone(), id.clone()), line) {
            return Err(c.err(
                &raw_op.id.span(),
                format!(
                    "{what} of clinic {clinic:?} is listed twice (first at line {first}); \
                     keep one entry"
                ),
            ));
        }
        operator_index
            .entry(clinic.clone())
            .or_default()
            .insert(id.clone(), operators.len());
        operators.push(Operator {
            clinic,
            id,
            qualification: qualification.clone(),
            qualification_max_mm,
            cap_mm,
        });
    }

    // Devices.
    let mut devices = Vec::new();
    let mut device_index: HashMap<String, HashMap<String, usize>> = HashMap::new();
    let mut device_lines: HashMap<(String, String), usize> = HashMap::new();
    for raw_dev in &raw.devices {
        let id = c.id("device id", &raw_dev.id)?;
        let what = format!("device {id:?}");
        let clinic = c.id(&format!("{what}: clinic"), &raw_dev.clinic)?;
        let Some(class) = DeviceClass::parse_name(raw_dev.class.get_ref()) else {
            return Err(c.err(
                &raw_dev.class.span(),
                format!(
                    "{what}: unknown class {:?} (expected: {})",
                    raw_dev.class.get_ref(),
                    DeviceClass::expected()
                ),
            ));
        };
        let line = c.line(&raw_dev.id.span());
        if let Some(first) = device_lines.insert((clinic.clone(), id.clone()), line) {
            return Err(c.err(
                &raw_dev.id.span(),
                format!(
                    "{what} of clinic {clinic:?} is listed twice (first at line {first}); \
                     keep one entry"
                ),
            ));
        }
        device_index
            .entry(clinic.clone())
            .or_default()
            .insert(id.clone(), devices.len());
        devices.push(Device { clinic, id, class });
    }

    // Zone ceilings per clinic.
    let mut zones: HashMap<String, Vec<(Zone, f64)>> = HashMap::new();
    for (clinic, table) in &raw.zones.0 {
        let clinic_id = c.id("[zones]: clinic", clinic)?;
        let mut ceilings: Vec<(Zone, f64, usize)> = Vec::new();
        for (name, value) in &table.get_ref().0 {
            let Some(zone) = Zone::parse_name(name.get_ref()) else {
                return Err(c.err(
                    &name.span(),
                    format!(
                        "[zones.{clinic_id}]: unknown zone {:?} (expected: {})",
                        name.get_ref(),
                        Zone::expected()
                    ),
                ));
            };
            if let Some((_, _, first)) = ceilings.iter().find(|(z, _, _)| *z == zone) {
                return Err(c.err(
                    &name.span(),
                    format!(
                        "[zones.{clinic_id}]: zone {:?} is set twice (also at line {first}); \
                         keep one",
                        zone.short_name()
                    ),
                ));
            }
            let mm = c.limit(
                &format!("[zones.{clinic_id}] {}", zone.short_name()),
                value,
                mechanical_max_mm,
            )?;
            ceilings.push((zone, mm, c.line(&name.span())));
        }
        zones.insert(
            clinic_id,
            ceilings.into_iter().map(|(z, mm, _)| (z, mm)).collect(),
        );
    }

    Ok(Policy {
        version: version_of(text),
        text: text.to_owned(),
        out_of_range_mm,
        mechanical_max_mm,
        classes,
        qualifications,
        cartridge_models,
        operators,
        operator_index,
        devices,
        device_index,
        zones,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../policy.example.toml");

    /// Classes and qualifications at their defaults, one operator per qualification and one
    /// device per class at clinic c01, and the zone ceilings of the domain brief.
    const MATRIX: &str = r#"
[[operators]]
id = "trainee"
clinic = "c01"
qualification = "trainee"

[[operators]]
id = "aesthetic"
clinic = "c01"
qualification = "aesthetic_practitioner"

[[operators]]
id = "advanced"
clinic = "c01"
qualification = "advanced_practitioner"

[[operators]]
id = "clinician"
clinic = "c01"
qualification = "clinician"

[[devices]]
id = "home"
clinic = "c01"
class = "home"

[[devices]]
id = "salon"
clinic = "c01"
class = "salon"

[[devices]]
id = "medical"
clinic = "c01"
class = "medical"

[zones.c01]
periorbital = 0.5
cheek = 1.5
scar = 2.5
"#;

    fn parse(text: &str) -> Policy {
        Policy::parse(text).unwrap_or_else(|e| panic!("policy should parse: {e}"))
    }

    fn sample<'a>(device_id: &'a str, operator_id: &'a str) -> SampleContext<'a> {
        SampleContext {
            clinic_id: "c01",
            device_id,
            claimed_class: DeviceClass::Unspecified,
            operator_id,
            zone: None,
            depth_mm: 0.0,
        }
    }

    /// The error of a text that must not validate, with its line.
    fn reject(text: &str) -> (Option<usize>, String) {
        match Policy::parse(text) {
            Ok(_) => panic!("policy should be rejected:\n{text}"),
            Err(e) => (e.line(), e.to_string()),
        }
    }

    fn assert_rejected(text: &str, line: usize, needle: &str) {
        let (got_line, message) = reject(text);
        assert_eq!(got_line, Some(line), "line of {message:?}");
        assert!(
            message.starts_with(&format!("policy line {line}")),
            "{message:?} should start with the line"
        );
        assert!(
            message.contains(needle),
            "{message:?} should contain {needle:?}"
        );
    }

    /// A device, an operator and the expected (permitted, binding) in four zones.
    type Row = (&'static str, &'static str, [(f64, Rule); 4]);

    #[test]
    fn every_class_qualification_and_zone_combination() {
        use Rule::{Class as C, Operator as O, Zone as Z};
        let policy = parse(MATRIX);
        let zones = [
            None,
            Some(Zone::Periorbital),
            Some(Zone::Cheek),
            Some(Zone::Scar),
        ];
        // (device, operator, [(permitted, binding) with no zone, periorbital, cheek, scar])
        #[rustfmt::skip]
        let table: [Row; 12] = [
            ("home", "trainee", [(0.5, C), (0.5, C), (0.5, C), (0.5, C)]),
            ("home", "aesthetic", [(0.5, C), (0.5, C), (0.5, C), (0.5, C)]),
            ("home", "advanced", [(0.5, C), (0.5, C), (0.5, C), (0.5, C)]),
            ("home", "clinician", [(0.5, C), (0.5, C), (0.5, C), (0.5, C)]),
            ("salon", "trainee", [(0.5, O), (0.5, O), (0.5, O), (0.5, O)]),
            ("salon", "aesthetic", [(1.0, C), (0.5, Z), (1.0, C), (1.0, C)]),
            ("salon", "advanced", [(1.0, C), (0.5, Z), (1.0, C), (1.0, C)]),
            ("salon", "clinician", [(1.0, C), (0.5, Z), (1.0, C), (1.0, C)]),
            ("medical", "trainee", [(0.5, O), (0.5, O), (0.5, O), (0.5, O)]),
            ("medical", "aesthetic", [(1.0, O), (0.5, Z), (1.0, O), (1.0, O)]),
            ("medical", "advanced", [(1.5, O), (0.5, Z), (1.5, O), (1.5, O)]),
            ("medical", "clinician", [(2.5, C), (0.5, Z), (1.5, Z), (2.5, C)]),
        ];
        for (device, operator, expected) in table {
            for (zone, (permitted, binding)) in zones.into_iter().zip(expected) {
                let case = format!("{device} × {operator} × {zone:?}");
                let mut s = sample(device, operator);
                s.zone = zone;
                s.depth_mm = permitted;
                let j = policy.judge(&s);
                assert_eq!(j.permitted_mm, permitted, "{case}");
                assert_eq!(j.binding, binding, "{case}");
                assert!(
                    !j.exceeded,
                    "{case}: depth equal to permitted is not exceeded"
                );
                assert!(!j.unknown_operator && !j.unregistered_device && !j.class_mismatch);
                s.depth_mm = permitted + 0.1;
                assert!(
                    policy.judge(&s).exceeded,
                    "{case}: above permitted is exceeded"
                );
            }
        }
    }

    #[test]
    fn ties_go_to_class_then_operator_then_zone_then_out_of_range() {
        let policy = parse(
            r#"
out_of_range_mm = 1.0
[classes]
salon = 1.0
[[operators]]
id = "op"
clinic = "c01"
qualification = "aesthetic_practitioner"
[zones.c01]
cheek = 1.0
"#,
        );
        let mut s = sample("pen", "op");
        s.claimed_class = DeviceClass::Salon;
        s.zone = Some(Zone::Cheek);
        assert_eq!(policy.judge(&s).binding, Rule::Class);
        s.claimed_class = DeviceClass::Medical;
        assert_eq!(policy.judge(&s).binding, Rule::Operator);
        let policy = parse(
            r#"
out_of_range_mm = 1.0
[qualifications]
clinician = 2.5
[[operators]]
id = "op"
clinic = "c01"
qualification = "clinician"
[zones.c01]
cheek = 1.0
"#,
        );
        let j = policy.judge(&s);
        assert_eq!((j.permitted_mm, j.binding), (1.0, Rule::Zone));
        s.zone = None;
        let j = policy.judge(&s);
        assert_eq!((j.permitted_mm, j.binding), (1.0, Rule::OutOfRange));
    }

    #[test]
    fn personal_cap_lowers_the_operator_limit() {
        let policy = parse(EXAMPLE);
        let mut s = sample("pen-c01-1", "op-c01-2");
        let j = policy.judge(&s);
        assert_eq!((j.permitted_mm, j.binding), (0.8, Rule::Operator));
        s.depth_mm = 0.9;
        assert!(policy.judge(&s).exceeded);
        let op = policy
            .operator("c01", "op-c01-2")
            .expect("operator is listed");
        assert_eq!(
            (op.qualification_max_mm, op.cap_mm, op.max_mm()),
            (1.0, Some(0.8), 0.8)
        );
        // A cap equal to the qualification's limit is accepted and changes nothing.
        let policy = parse(
            "[[operators]]\nid = \"a\"\nclinic = \"c\"\nqualification = \"trainee\"\ncap_mm = 0.5\n",
        );
        assert_eq!(policy.operators()[0].max_mm(), 0.5);
    }

    #[test]
    fn unknown_operator_gets_the_most_restrictive_qualification() {
        let policy = parse(EXAMPLE);
        for operator_id in ["op-nobody", ""] {
            let j = policy.judge(&sample("pen-c01-1", operator_id));
            assert!(j.unknown_operator, "{operator_id:?}");
            assert_eq!((j.permitted_mm, j.binding), (0.5, Rule::Operator));
        }
        // The minimum is over [qualifications], whatever it is.
        let policy = parse("[qualifications]\ntrainee = 0.3\n");
        let mut s = sample("pen", "op-nobody");
        s.claimed_class = DeviceClass::Medical;
        let j = policy.judge(&s);
        assert_eq!(
            (j.permitted_mm, j.binding, j.unknown_operator),
            (0.3, Rule::Operator, true)
        );
        // On a home pen the class (0.5) is at most the unknown operator's limit: class binds.
        let policy = parse(EXAMPLE);
        s.claimed_class = DeviceClass::Home;
        let j = policy.judge(&s);
        assert_eq!(
            (j.permitted_mm, j.binding, j.unknown_operator),
            (0.5, Rule::Class, true)
        );
    }

    #[test]
    fn operator_listed_for_another_clinic_is_unknown() {
        let policy = parse(EXAMPLE);
        let mut s = sample("pen-c02-1", "op-c01-1");
        s.clinic_id = "c02";
        s.claimed_class = DeviceClass::Medical;
        let j = policy.judge(&s);
        assert!(j.unknown_operator);
        assert_eq!((j.permitted_mm, j.binding), (0.5, Rule::Operator));
        assert!(policy.operator("c02", "op-c01-1").is_none());
        assert!(policy.operator("c01", "op-c01-1").is_some());
    }

    #[test]
    fn registered_class_wins_over_the_claimed_one() {
        let policy = parse(EXAMPLE);
        let mut s = sample("pen-c01-1", "op-c01-1");
        for (claimed, mismatch) in [
            (DeviceClass::Medical, false),
            (DeviceClass::Unspecified, false),
            (DeviceClass::Home, true),
            (DeviceClass::Salon, true),
        ] {
            s.claimed_class = claimed;
            let j = policy.judge(&s);
            assert_eq!(j.class, DeviceClass::Medical, "{claimed:?}");
            assert_eq!(j.permitted_mm, 2.5, "{claimed:?}");
            assert_eq!(j.class_mismatch, mismatch, "{claimed:?}");
            assert!(!j.unregistered_device);
        }
    }

    #[test]
    fn unregistered_device_is_judged_by_its_claimed_class() {
        let policy = parse(EXAMPLE);
        let mut s = sample("pen-unknown", "op-c01-1");
        s.claimed_class = DeviceClass::Salon;
        let j = policy.judge(&s);
        assert_eq!(
            (j.class, j.permitted_mm, j.binding),
            (DeviceClass::Salon, 1.0, Rule::Class)
        );
        assert!(j.unregistered_device && !j.class_mismatch && !j.unknown_operator);
        // A pen registered at c01 is unregistered at c02.
        s.clinic_id = "c02";
        s.device_id = "pen-c01-1";
        let j = policy.judge(&s);
        assert!(j.unregistered_device && !j.class_mismatch);
        assert_eq!(j.class, DeviceClass::Salon);
    }

    #[test]
    fn unregistered_device_claiming_no_class_gets_the_most_restrictive_class() {
        let policy = parse("[classes]\nhome = 0.4\n");
        let j = policy.judge(&sample("pen-unknown", "op"));
        assert!(j.unregistered_device);
        assert_eq!(j.class, DeviceClass::Unspecified);
        assert_eq!((j.permitted_mm, j.binding), (0.4, Rule::Class));
    }

    #[test]
    fn out_of_range_binds_when_it_is_the_lowest() {
        let policy = parse(
            r#"
[classes]
medical = 3.0
[qualifications]
clinician = 3.0
[[operators]]
id = "op"
clinic = "c01"
qualification = "clinician"
"#,
        );
        let mut s = sample("pen", "op");
        s.claimed_class = DeviceClass::Medical;
        s.depth_mm = 2.8;
        let j = policy.judge(&s);
        assert_eq!((j.permitted_mm, j.binding), (2.5, Rule::OutOfRange));
        assert!(j.exceeded);
        s.depth_mm = 2.5;
        assert!(!policy.judge(&s).exceeded);
    }

    #[test]
    fn retracted_needles_are_never_exceeded() {
        let policy = parse(EXAMPLE);
        let mut s = sample("pen-x", "");
        s.zone = Some(Zone::Periorbital);
        assert!(!policy.judge(&s).exceeded);
    }

    #[test]
    fn zone_ceilings_apply_only_where_the_clinic_set_them() {
        let policy = parse(EXAMPLE);
        let mut s = sample("pen-c01-1", "op-c01-1");
        s.zone = Some(Zone::Forehead);
        assert_eq!(policy.judge(&s).binding, Rule::Zone);
        s.zone = Some(Zone::Cheek);
        assert_eq!(policy.judge(&s).binding, Rule::Class);
        s.zone = Some(Zone::Unspecified);
        assert_eq!(policy.judge(&s).binding, Rule::Class);
        s.zone = Some(Zone::Forehead);
        s.clinic_id = "c02";
        let j = policy.judge(&s);
        assert_ne!(j.binding, Rule::Zone);
        assert_eq!(policy.zone_max_mm("c01", Zone::Periorbital), Some(0.5));
        assert_eq!(policy.zone_max_mm("c02", Zone::Periorbital), None);
    }

    #[test]
    fn rule_names() {
        let names: Vec<String> = [Rule::Class, Rule::Operator, Rule::Zone, Rule::OutOfRange]
            .iter()
            .map(|r| format!("{r}/{}", r.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                "class/class",
                "operator/operator",
                "zone/zone",
                "out_of_range/out_of_range"
            ]
        );
    }

    #[test]
    fn version_is_a_sha256_prefix_stable_and_changes_with_the_text() {
        assert_eq!(Policy::defaults().version(), "e3b0c44298fc");
        assert_eq!(parse("").version(), "e3b0c44298fc");
        let a = parse(EXAMPLE);
        assert_eq!(a.version(), parse(EXAMPLE).version());
        assert_eq!(a.version().len(), 12);
        assert!(a.version().bytes().all(|b| b.is_ascii_hexdigit()));
        let b = parse(&format!("{EXAMPLE}\n# comment\n"));
        assert_ne!(a.version(), b.version());
        assert_eq!(parse("out_of_range_mm = 2.5\n").version(), {
            let mut h = hex::encode(Sha256::digest(b"out_of_range_mm = 2.5\n"));
            h.truncate(12);
            h
        });
    }

    #[test]
    fn example_file_parses() {
        let p = parse(EXAMPLE);
        assert_eq!((p.out_of_range_mm(), p.mechanical_max_mm()), (2.5, 3.0));
        assert_eq!(p.class_max_mm(DeviceClass::Salon), Some(1.0));
        assert_eq!(p.rated_strokes("N36"), Some(250_000));
        assert_eq!(p.rated_strokes("NANO"), Some(400_000));
        assert_eq!(p.rated_strokes("n36"), None);
        let ops: Vec<(&str, &str, &str)> = p
            .operators()
            .iter()
            .map(|o| (o.clinic.as_str(), o.id.as_str(), o.qualification.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("c01", "op-c01-1", "clinician"),
                ("c01", "op-c01-2", "aesthetic_practitioner")
            ]
        );
        assert_eq!(
            p.devices(),
            [Device {
                clinic: "c01".into(),
                id: "pen-c01-1".into(),
                class: DeviceClass::Medical
            }]
        );
        assert_eq!(
            p.device("c01", "pen-c01-1").map(|d| d.class),
            Some(DeviceClass::Medical)
        );
        assert_eq!(p.zone_max_mm("c01", Zone::Forehead), Some(0.5));
    }

    #[test]
    fn defaults_are_the_domain_brief() {
        let d = Policy::defaults();
        assert_eq!((d.out_of_range_mm(), d.mechanical_max_mm()), (2.5, 3.0));
        let classes: Vec<Option<f64>> =
            [DeviceClass::Home, DeviceClass::Salon, DeviceClass::Medical]
                .into_iter()
                .map(|c| d.class_max_mm(c))
                .collect();
        assert_eq!(classes, [Some(0.5), Some(1.0), Some(2.5)]);
        assert_eq!(d.class_max_mm(DeviceClass::Unspecified), None);
        let quals: Vec<(&str, f64)> = d.qualifications().collect();
        assert_eq!(
            quals,
            [
                ("trainee", 0.5),
                ("aesthetic_practitioner", 1.0),
                ("advanced_practitioner", 1.5),
                ("clinician", 2.5)
            ]
        );
        assert!(d.operators().is_empty() && d.devices().is_empty());
        assert_eq!(d.rated_strokes("N12"), None);
        assert_eq!(d.zone_max_mm("c01", Zone::Periorbital), None);
        // An empty file is exactly the defaults.
        assert_eq!(parse(""), d);
    }

    #[test]
    fn missing_keys_fall_back_to_defaults_and_integers_are_millimetres() {
        let p =
            parse("mechanical_max_mm = 3\n[classes]\nmedical = 2\n[qualifications]\nnurse = 2\n");
        assert_eq!(p.mechanical_max_mm(), 3.0);
        assert_eq!(p.class_max_mm(DeviceClass::Home), Some(0.5));
        assert_eq!(p.class_max_mm(DeviceClass::Medical), Some(2.0));
        let names: Vec<&str> = p.qualifications().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "trainee",
                "aesthetic_practitioner",
                "advanced_practitioner",
                "clinician",
                "nurse"
            ]
        );
        // Full protobuf names are accepted, in any case.
        let p = parse("[classes]\nDEVICE_CLASS_SALON = 0.8\n[zones.c01]\nZone_Cheek = 1.0\n");
        assert_eq!(p.class_max_mm(DeviceClass::Salon), Some(0.8));
        assert_eq!(p.zone_max_mm("c01", Zone::Cheek), Some(1.0));
    }

    #[test]
    fn syntax_and_unknown_keys_name_line_and_column() {
        let (line, message) = reject("out_of_range_mm = 2.5\nmax_depth = 2.0\n");
        assert_eq!(line, Some(2));
        assert!(
            message.starts_with("policy line 2, column 1: unknown field `max_depth`"),
            "{message}"
        );
        let (line, message) = reject(
            "[classes]\nhome = 0.5\n\n[[operators]]\nid = \"a\"\nclinic = \"c\"\nqualification = \"trainee\"\ncap = 0.4\n",
        );
        assert_eq!(line, Some(8), "{message}");
        assert!(message.contains("unknown field `cap`"), "{message}");
        let (line, message) = reject("[classes]\nhome = \"shallow\"\n");
        assert_eq!(line, Some(2), "{message}");
        let (line, message) = reject("[classes\nhome = 0.5\n");
        assert_eq!(line, Some(1), "{message}");
        let (line, message) = reject("[[devices]]\nid = \"pen\"\nclass = \"home\"\n");
        assert!(message.contains("missing field `clinic`"), "{message}");
        assert_eq!(line, Some(1), "{message}");
        let (line, message) = reject("[cartridge_models]\nN12 = -5\n");
        assert_eq!(line, Some(2), "{message}");
    }

    #[test]
    fn invalid_limits_are_rejected_at_their_line() {
        assert_rejected(
            "\n[classes]\nspa = 0.5\n",
            3,
            "unknown device class \"spa\" (expected: home, salon, medical)",
        );
        assert_rejected(
            "[classes]\nhome = 0.5\nHOME = 0.4\n",
            3,
            "set twice (also at line 2)",
        );
        assert_rejected("[classes]\nhome = nan\n", 2, "is not a number");
        assert_rejected("[classes]\nhome = 0\n", 2, "must be above 0 mm");
        assert_rejected("[classes]\nhome = -0.5\n", 2, "must be above 0 mm");
        assert_rejected(
            "[classes]\nmedical = 3.5\n",
            2,
            "[classes] medical = 3.5 mm is above mechanical_max_mm = 3",
        );
        assert_rejected(
            "[qualifications]\nclinician = inf\n",
            2,
            "above mechanical_max_mm",
        );
        assert_rejected(
            "out_of_range_mm = 3.2\n",
            1,
            "out_of_range_mm = 3.2 mm is above mechanical_max_mm",
        );
        assert_rejected(
            "mechanical_max_mm = 0\n",
            1,
            "mechanical_max_mm = 0.0 must be a positive number",
        );
        assert_rejected(
            "mechanical_max_mm = nan\n",
            1,
            "mechanical_max_mm = NaN must be a positive",
        );
        // A lowered mechanical maximum below a default is blamed on mechanical_max_mm.
        assert_rejected(
            "# c\nmechanical_max_mm = 2.0\n",
            2,
            "below the default out_of_range_mm of 2.5 mm",
        );
        assert_rejected(
            "mechanical_max_mm = 2.0\nout_of_range_mm = 2.0\n[qualifications]\nclinician = 2.0\n",
            1,
            "below the default [classes] medical of 2.5 mm",
        );
        assert_rejected(
            "mechanical_max_mm = 2.0\nout_of_range_mm = 2.0\n[classes]\nmedical = 2.0\n",
            1,
            "below the default [qualifications] clinician of 2.5 mm",
        );
        assert_rejected(
            "[cartridge_models]\nN12 = 300000\nN36 = 0\n",
            3,
            "model \"N36\" has a rated life of 0 strokes",
        );
        assert_rejected("[cartridge_models]\n\"\" = 10\n", 2, "model name is empty");
        assert_rejected(
            "[qualifications]\n\"senior nurse\" = 2.0\n",
            2,
            "\"senior nurse\" is not a valid id",
        );
    }

    #[test]
    fn invalid_operators_devices_and_zones_are_rejected_at_their_line() {
        let op = |id: &str, clinic: &str, qualification: &str, extra: &str| {
            format!(
                "[[operators]]\nid = \"op-1\"\nclinic = \"c01\"\nqualification = \"clinician\"\n\n\
                 [[operators]]\nid = \"{id}\"\nclinic = \"{clinic}\"\nqualification = \"{qualification}\"\n{extra}"
            )
        };
        assert_rejected(
            &op("op-c01-2", "c01", "nurse", ""),
            9,
            "operator \"op-c01-2\": qualification \"nurse\" is not defined in [qualifications] \
             (defined: trainee, aesthetic_practitioner, advanced_practitioner, clinician)",
        );
        assert_rejected(
            &op("op-1", "c01", "trainee", ""),
            7,
            "operator \"op-1\" of clinic \"c01\" is listed twice (first at line 2)",
        );
        assert!(
            Policy::parse(&op("op-1", "c02", "trainee", "")).is_ok(),
            "same id at another clinic"
        );
        assert_rejected(
            &op("", "c01", "trainee", ""),
            7,
            "operator id \"\" is not a valid id",
        );
        assert_rejected(&op("op 2", "c01", "trainee", ""), 7, "operator id \"op 2\"");
        assert_rejected(&op("op/2", "c01", "trainee", ""), 7, "not a valid id");
        assert_rejected(
            &op("op-2", "c+1", "trainee", ""),
            8,
            "operator \"op-2\": clinic \"c+1\" is not a valid id",
        );
        assert_rejected(&op("op-2", "c#", "trainee", ""), 8, "not a valid id");
        assert_rejected(
            &op("op-2", "c01", "aesthetic_practitioner", "cap_mm = 1.2\n"),
            10,
            "cap_mm = 1.2 is above the 1.0 mm of qualification \"aesthetic_practitioner\"",
        );
        assert_rejected(
            &op("op-2", "c01", "trainee", "cap_mm = 0.0\n"),
            10,
            "cap_mm = 0.0 must be above 0 mm",
        );

        let dev = |id: &str, clinic: &str, class: &str| {
            format!(
                "[[devices]]\nid = \"pen-1\"\nclinic = \"c01\"\nclass = \"home\"\n\n\
                 [[devices]]\nid = \"{id}\"\nclinic = \"{clinic}\"\nclass = \"{class}\"\n"
            )
        };
        assert_rejected(
            &dev("pen-1", "c01", "salon"),
            7,
            "device \"pen-1\" of clinic \"c01\" is listed twice (first at line 2)",
        );
        assert!(
            Policy::parse(&dev("pen-1", "c02", "salon")).is_ok(),
            "same serial at another clinic"
        );
        assert_rejected(
            &dev("pen-2", "c01", "spa"),
            9,
            "device \"pen-2\": unknown class \"spa\" (expected: home, salon, medical)",
        );
        assert_rejected(&dev("pen-2", "c01", "unspecified"), 9, "unknown class");
        assert_rejected(&dev("pen\t2", "c01", "home"), 7, "not a valid id");
        assert_rejected(
            &dev("pen-2", "", "home"),
            8,
            "clinic \"\" is not a valid id",
        );

        assert_rejected(
            "[zones.c01]\nforehead = 0.5\neyelid = 0.3\n",
            3,
            &format!(
                "[zones.c01]: unknown zone \"eyelid\" (expected: {})",
                Zone::expected()
            ),
        );
        assert_rejected(
            "[zones.c01]\ncheek = 1.0\nZONE_CHEEK = 1.2\n",
            3,
            "zone \"cheek\" is set twice (also at line 2)",
        );
        assert_rejected(
            "[zones.c01]\ncheek = 0\n",
            2,
            "[zones.c01] cheek = 0.0 must be above 0 mm",
        );
        assert_rejected("[zones.c01]\ncheek = 4.0\n", 2, "above mechanical_max_mm");
        assert_rejected(
            "\n[zones.\"c 1\"]\ncheek = 1.0\n",
            2,
            "[zones]: clinic \"c 1\" is not a valid id",
        );
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("policy.toml");
        std::fs::write(&good, EXAMPLE).expect("write policy");
        let p = Policy::load(&good).expect("example loads");
        assert_eq!(p, parse(EXAMPLE));

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[classes]\nhome = 0.5\nsalon = 9\n").expect("write policy");
        let message = Policy::load(&bad)
            .expect_err("limit above mechanical max")
            .to_string();
        assert!(
            message.starts_with(&format!("{} line 3: ", bad.display())),
            "{message}"
        );

        let missing = dir.path().join("missing.toml");
        let err = Policy::load(&missing).expect_err("missing file");
        assert!(matches!(err, PolicyError::Read { .. }));
        assert_eq!(err.line(), None);
        assert!(
            err.to_string().starts_with(&missing.display().to_string()),
            "{err}"
        );
    }
}
