//! The per-clinic sections: `[[operators]]`, `[[devices]]`, `[zones.CLINIC]` ceilings and
//! `[clinics.CLINIC]` settings (jurisdiction, registered premises).

use std::collections::HashMap;

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{DeviceClass, Zone};

use super::check::Checker;
use super::raw::{Entries, RawClinic, RawDevice, RawOperator};
use crate::policy::model::ClinicIndex;
use crate::policy::{Clinic, Device, Fault, Jurisdiction, Operator, PolicyError};

/// Entries listed per clinic, in file order, with their index by clinic and id.
pub(super) struct Listed<T> {
    /// The entries, in file order.
    pub(super) items: Vec<T>,
    /// Clinic id → entry id → position in `items`.
    pub(super) index: ClinicIndex,
    /// Line of each (clinic, id) pair seen so far.
    lines: HashMap<(String, String), usize>,
}

impl<T> Listed<T> {
    fn new() -> Self {
        Listed {
            items: Vec::new(),
            index: HashMap::new(),
            lines: HashMap::new(),
        }
    }

    /// Adds an entry, or returns the line where the same clinic and id were first listed.
    fn add(&mut self, clinic: &str, id: &str, line: usize, item: T) -> Result<(), usize> {
        if let Some(first) = self.lines.insert((clinic.to_owned(), id.to_owned()), line) {
            return Err(first);
        }
        self.index
            .entry(clinic.to_owned())
            .or_default()
            .insert(id.to_owned(), self.items.len());
        self.items.push(item);
        Ok(())
    }
}

/// Reads `[[operators]]`: each names a defined qualification, at most once per clinic.
pub(super) fn operators(
    c: &Checker<'_>,
    raw: &[RawOperator],
    qualifications: &[(String, f64)],
    mechanical_max_mm: f64,
) -> Result<Listed<Operator>, PolicyError> {
    let mut operators = Listed::new();
    for raw_op in raw {
        let op = operator(c, raw_op, qualifications, mechanical_max_mm)?;
        let (clinic, id) = (op.clinic.clone(), op.id.clone());
        let line = c.line(&raw_op.id.span());
        if let Err(first) = operators.add(&clinic, &id, line, op) {
            let fault = Fault::OperatorTwice {
                operator: id,
                clinic,
                first,
            };
            return Err(c.err(&raw_op.id.span(), fault));
        }
    }
    Ok(operators)
}

/// Reads one operator: ids, qualification and optional personal cap.
fn operator(
    c: &Checker<'_>,
    raw: &RawOperator,
    qualifications: &[(String, f64)],
    mechanical_max_mm: f64,
) -> Result<Operator, PolicyError> {
    let id = c.id("operator id", &raw.id)?;
    let clinic = c.id(&format!("operator {id:?}: clinic"), &raw.clinic)?;
    let qualification = raw.qualification.get_ref();
    let Some(&(_, qualification_max_mm)) = qualifications.iter().find(|(n, _)| n == qualification)
    else {
        let defined: Vec<&str> = qualifications.iter().map(|(n, _)| n.as_str()).collect();
        let fault = Fault::UndefinedQualification {
            operator: id,
            qualification: qualification.clone(),
            defined: defined.join(", "),
        };
        return Err(c.err(&raw.qualification.span(), fault));
    };
    let cap_mm = match &raw.cap_mm {
        Some(cap) => {
            let key = format!("operator {id:?}: cap_mm");
            let mm = c.limit(&key, cap, mechanical_max_mm)?;
            if mm > qualification_max_mm {
                let fault = Fault::CapAboveQualification {
                    operator: id,
                    cap_mm: mm,
                    qualification: qualification.clone(),
                    qualification_max_mm,
                };
                return Err(c.err(&cap.span(), fault));
            }
            Some(mm)
        }
        None => None,
    };
    Ok(Operator {
        clinic,
        id,
        qualification: qualification.clone(),
        qualification_max_mm,
        cap_mm,
        healthcare_professional: raw.healthcare_professional,
    })
}

/// Reads `[[devices]]`: each with a known class, at most once per clinic.
pub(super) fn devices(c: &Checker<'_>, raw: &[RawDevice]) -> Result<Listed<Device>, PolicyError> {
    let mut devices = Listed::new();
    for raw_dev in raw {
        let id = c.id("device id", &raw_dev.id)?;
        let clinic = c.id(&format!("device {id:?}: clinic"), &raw_dev.clinic)?;
        let Some(class) = DeviceClass::parse_name(raw_dev.class.get_ref()) else {
            let fault = Fault::UnknownDeviceClass {
                device: id,
                class: raw_dev.class.get_ref().clone(),
            };
            return Err(c.err(&raw_dev.class.span(), fault));
        };
        let line = c.line(&raw_dev.id.span());
        let device = Device {
            clinic: clinic.clone(),
            id: id.clone(),
            class,
        };
        if let Err(first) = devices.add(&clinic, &id, line, device) {
            let fault = Fault::DeviceTwice {
                device: id,
                clinic,
                first,
            };
            return Err(c.err(&raw_dev.id.span(), fault));
        }
    }
    Ok(devices)
}

/// Reads `[zones.CLINIC]`: each clinic's ceiling per zone, each zone at most once.
pub(super) fn zones(
    c: &Checker<'_>,
    table: &Entries<Entries<f64>>,
    mechanical_max_mm: f64,
) -> Result<HashMap<String, Vec<(Zone, f64)>>, PolicyError> {
    let mut zones = HashMap::new();
    for (clinic, ceilings) in &table.0 {
        let clinic_id = c.id("[zones]: clinic", clinic)?;
        let ceilings = clinic_zones(c, &clinic_id, ceilings.get_ref(), mechanical_max_mm)?;
        zones.insert(clinic_id, ceilings);
    }
    Ok(zones)
}

/// Reads one clinic's zone ceilings.
fn clinic_zones(
    c: &Checker<'_>,
    clinic_id: &str,
    table: &Entries<f64>,
    mechanical_max_mm: f64,
) -> Result<Vec<(Zone, f64)>, PolicyError> {
    let mut ceilings: Vec<(Zone, f64, usize)> = Vec::new();
    for (name, value) in &table.0 {
        let Some(zone) = Zone::parse_name(name.get_ref()) else {
            let fault = Fault::UnknownZone {
                clinic: clinic_id.to_owned(),
                name: name.get_ref().clone(),
            };
            return Err(c.err(&name.span(), fault));
        };
        if let Some((_, _, first)) = ceilings.iter().find(|(z, _, _)| *z == zone) {
            let fault = Fault::ZoneTwice {
                clinic: clinic_id.to_owned(),
                zone: zone.short_name().to_owned(),
                first: *first,
            };
            return Err(c.err(&name.span(), fault));
        }
        let key = format!("[zones.{clinic_id}] {}", zone.short_name());
        let mm = c.limit(&key, value, mechanical_max_mm)?;
        ceilings.push((zone, mm, c.line(&name.span())));
    }
    Ok(ceilings.into_iter().map(|(z, mm, _)| (z, mm)).collect())
}

/// Reads `[clinics.CLINIC]`: each clinic's jurisdiction (a known one) and whether its
/// premises are registered.
pub(super) fn clinics(
    c: &Checker<'_>,
    table: &Entries<RawClinic>,
) -> Result<HashMap<String, Clinic>, PolicyError> {
    let mut clinics = HashMap::new();
    for (clinic, raw) in &table.0 {
        let id = c.id("[clinics]: clinic", clinic)?;
        let raw = raw.get_ref();
        let jurisdiction = match &raw.jurisdiction {
            Some(name) => match Jurisdiction::parse_name(name.get_ref()) {
                Some(j) => Some(j),
                None => {
                    let fault = Fault::UnknownJurisdiction {
                        clinic: id,
                        name: name.get_ref().clone(),
                    };
                    return Err(c.err(&name.span(), fault));
                }
            },
            None => None,
        };
        clinics.insert(
            id.clone(),
            Clinic {
                id,
                jurisdiction,
                registered_premises: raw.registered_premises,
            },
        );
    }
    Ok(clinics)
}

#[cfg(test)]
mod tests {
    use penwatch_proto::names::ShortName;
    use penwatch_proto::v1::Zone;

    use crate::policy::fixtures::assert_rejected;
    use crate::policy::{Jurisdiction, Policy};

    #[test]
    fn invalid_operators_are_rejected_at_their_line() {
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
    }

    #[test]
    fn invalid_devices_are_rejected_at_their_line() {
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
    }

    #[test]
    fn invalid_zones_are_rejected_at_their_line() {
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
    fn clinic_settings_are_read_and_an_unknown_jurisdiction_is_rejected_at_its_line() {
        let policy = Policy::parse(
            "[clinics.c03]\njurisdiction = \"scotland\"\n\n[clinics.c04]\nregistered_premises = true\n",
        )
        .expect("valid");
        let c03 = policy.clinic("c03").expect("c03");
        assert_eq!(
            (c03.jurisdiction, c03.registered_premises),
            (Some(Jurisdiction::Scotland), false)
        );
        let c04 = policy.clinic("c04").expect("c04");
        assert_eq!((c04.jurisdiction, c04.registered_premises), (None, true));
        assert!(policy.clinic("c01").is_none());
        assert_rejected(
            "[clinics.c03]\nregistered_premises = true\njurisdiction = \"england\"\n",
            3,
            "[clinics.c03]: unknown jurisdiction \"england\" (expected: scotland)",
        );
        assert_rejected(
            "[clinics.\"c 3\"]\njurisdiction = \"scotland\"\n",
            1,
            "[clinics]: clinic \"c 3\" is not a valid id",
        );
    }
}
