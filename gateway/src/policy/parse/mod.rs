//! Reading the policy file: TOML into the file's shape ([`raw`]), then one function per
//! section, in file-format order, each validating what it reads ([`limits`] for the global
//! thresholds, classes, qualifications and cartridge models; [`clinics`] for operators,
//! devices, zone ceilings and clinic settings).

mod check;
mod clinics;
mod limits;
mod raw;

use std::path::Path;

use check::Checker;
use raw::RawPolicy;

use super::model::version_of;
use super::{Policy, PolicyError};

/// Name used for the policy text in errors when it does not come from a file.
const TEXT_ORIGIN: &str = "policy";

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
}

/// Parses and validates policy text; `origin` names it in errors.
fn parse_with_origin(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let c = Checker { text, origin };
    let raw: RawPolicy = toml::from_str(text).map_err(|e| c.syntax(&e))?;

    let mechanical = limits::Mechanical::read(&c, raw.mechanical_max_mm.as_ref())?;
    let out_of_range_mm = limits::out_of_range(&c, raw.out_of_range_mm.as_ref(), &mechanical)?;
    let classes = limits::classes(&c, &raw.classes, &mechanical)?;
    let qualifications = limits::qualifications(&c, &raw.qualifications, &mechanical)?;
    let cartridge_models = limits::cartridge_models(&c, &raw.cartridge_models)?;
    let operators = clinics::operators(&c, &raw.operators, &qualifications, mechanical.mm)?;
    let devices = clinics::devices(&c, &raw.devices)?;
    let zones = clinics::zones(&c, &raw.zones, mechanical.mm)?;
    let clinic_settings = clinics::clinics(&c, &raw.clinics)?;

    let mut device_by_id = std::collections::HashMap::new();
    for (i, d) in devices.items.iter().enumerate() {
        device_by_id.entry(d.id.clone()).or_insert(i);
    }

    Ok(Policy {
        version: version_of(text),
        text: text.to_owned(),
        out_of_range_mm,
        mechanical_max_mm: mechanical.mm,
        classes,
        qualifications,
        cartridge_models,
        operators: operators.items,
        operator_index: operators.index,
        devices: devices.items,
        device_index: devices.index,
        device_by_id,
        zones,
        clinics: clinic_settings,
    })
}

#[cfg(test)]
mod tests {
    use crate::policy::Policy;
    use crate::policy::fixtures::reject;

    #[test]
    fn a_serial_is_found_at_its_first_registration_whatever_the_clinic() {
        let p = Policy::parse(
            "[[devices]]\nid = \"pen-1\"\nclinic = \"c02\"\nclass = \"home\"\n\
             [[devices]]\nid = \"pen-1\"\nclinic = \"c01\"\nclass = \"salon\"\n",
        )
        .expect("valid");
        assert_eq!(
            p.device_anywhere("pen-1").map(|d| d.clinic.as_str()),
            Some("c02")
        );
        assert!(p.device("c01", "pen-1").is_some());
        assert!(p.device_anywhere("pen-2").is_none());
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
}
