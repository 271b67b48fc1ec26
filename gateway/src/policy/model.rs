//! The policy model: one validated version of the file, its limits, qualifications, known
//! operators and devices, zone ceilings and cartridge models, and the domain defaults.

use std::collections::HashMap;

use penwatch_proto::v1::{DeviceClass, Zone};
use sha2::{Digest, Sha256};

/// Default depth above which a sample is out of the clinical range (mm).
pub(super) const DEFAULT_OUT_OF_RANGE_MM: f64 = 2.5;
/// Default mechanical maximum of a pen (mm); above it a depth is invalid telemetry.
pub(super) const DEFAULT_MECHANICAL_MAX_MM: f64 = 3.0;
/// Default maximum depth per device class (mm).
pub(super) const DEFAULT_CLASSES: [(DeviceClass, f64); 3] = [
    (DeviceClass::Home, 0.5),
    (DeviceClass::Salon, 1.0),
    (DeviceClass::Medical, 2.5),
];
/// Default maximum depth per operator qualification (mm).
pub(super) const DEFAULT_QUALIFICATIONS: [(&str, f64); 4] = [
    ("trainee", 0.5),
    ("aesthetic_practitioner", 1.0),
    ("advanced_practitioner", 1.5),
    ("clinician", 2.5),
];
/// Depth from which microneedling is a specified procedure in Scotland (mm): the Non-surgical
/// Procedures and Functions of Medical Reviewers (Scotland) Act 2026, schedule 1 paragraph 8
/// ("to a depth of 1.5 mm or more").
pub const SCOTLAND_SPECIFIED_MM: f64 = 1.5;

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
    /// A healthcare professional (doctor, nurse, dentist, pharmacist…), as jurisdictions
    /// that reserve procedures to them require.
    pub healthcare_professional: bool,
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

/// A jurisdiction whose rules add to the depth policy of the clinics that carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jurisdiction {
    /// Scotland: microneedling to 1.5 mm or more is a specified procedure, only by a
    /// healthcare professional in registered premises.
    Scotland,
}

impl Jurisdiction {
    /// Every jurisdiction, in the order error messages list them.
    pub const ALL: [Jurisdiction; 1] = [Jurisdiction::Scotland];

    /// The name used in the policy file: `"scotland"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Jurisdiction::Scotland => "scotland",
        }
    }

    /// The jurisdiction with this policy-file name.
    pub fn parse_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == name)
    }

    /// The names the policy file accepts, for error messages.
    pub fn expected() -> String {
        Self::ALL.map(Jurisdiction::as_str).join(", ")
    }
}

/// A clinic's settings beyond its operators, devices and zones (`[clinics.CLINIC]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Clinic {
    /// Clinic id.
    pub id: String,
    /// The jurisdiction whose rules apply, if any.
    pub jurisdiction: Option<Jurisdiction>,
    /// The premises are registered for the procedures the jurisdiction reserves.
    pub registered_premises: bool,
}

/// Entries of one kind per clinic: clinic id → key → position in the list.
pub(super) type ClinicIndex = HashMap<String, HashMap<String, usize>>;

/// A validated, immutable version of the depth policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub(super) version: String,
    pub(super) text: String,
    pub(super) out_of_range_mm: f64,
    pub(super) mechanical_max_mm: f64,
    pub(super) classes: Vec<(DeviceClass, f64)>,
    pub(super) qualifications: Vec<(String, f64)>,
    pub(super) cartridge_models: Vec<(String, u64)>,
    pub(super) operators: Vec<Operator>,
    pub(super) operator_index: ClinicIndex,
    pub(super) devices: Vec<Device>,
    pub(super) device_index: ClinicIndex,
    /// Device id → its first registration, whatever the clinic.
    pub(super) device_by_id: HashMap<String, usize>,
    pub(super) zones: HashMap<String, Vec<(Zone, f64)>>,
    pub(super) clinics: HashMap<String, Clinic>,
}

impl Policy {
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
            qualifications: default_qualifications(),
            cartridge_models: Vec::new(),
            operators: Vec::new(),
            operator_index: HashMap::new(),
            devices: Vec::new(),
            device_index: HashMap::new(),
            device_by_id: HashMap::new(),
            zones: HashMap::new(),
            clinics: HashMap::new(),
        }
    }

    /// Version id: the first 12 hex digits of the SHA-256 of the file text.
    pub fn version(&self) -> &str {
        &self.version
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

    /// A clinic's settings, if the file has a `[clinics.CLINIC]` section for it.
    pub fn clinic(&self, clinic_id: &str) -> Option<&Clinic> {
        self.clinics.get(clinic_id)
    }

    /// Whether the policy names the clinic: a `[clinics.CLINIC]` section, an operator, a
    /// device or zone limits of it.
    pub fn names_clinic(&self, clinic_id: &str) -> bool {
        self.clinics.contains_key(clinic_id)
            || self.operator_index.contains_key(clinic_id)
            || self.device_index.contains_key(clinic_id)
            || self.zones.contains_key(clinic_id)
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

    /// The first registration of this serial, at whichever clinic.
    pub fn device_anywhere(&self, device_id: &str) -> Option<&Device> {
        self.devices.get(*self.device_by_id.get(device_id)?)
    }
}

/// The default qualifications, in the order of the domain brief.
pub(super) fn default_qualifications() -> Vec<(String, f64)> {
    DEFAULT_QUALIFICATIONS
        .iter()
        .map(|(n, mm)| ((*n).to_owned(), *mm))
        .collect()
}

/// The version id of a policy text.
pub(super) fn version_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(12);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyError;
    use crate::policy::fixtures::{EXAMPLE, parse};

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
        assert!(p.names_clinic("c01") && !p.names_clinic("c99"));
        assert!(!Policy::defaults().names_clinic("c01"));
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
        let healthcare: Vec<bool> = p
            .operators()
            .iter()
            .map(|o| o.healthcare_professional)
            .collect();
        assert_eq!(healthcare, [true, false]);
        assert_eq!(
            p.clinic("c03"),
            Some(&Clinic {
                id: "c03".into(),
                jurisdiction: Some(Jurisdiction::Scotland),
                registered_premises: false
            })
        );
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
