//! The depth-limit sections: `mechanical_max_mm`, `out_of_range_mm`, `[classes]`,
//! `[qualifications]`, and the rated stroke lives of `[cartridge_models]`.

use std::ops::Range;

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::DeviceClass;
use toml::Spanned;

use super::check::Checker;
use super::raw::Entries;
use crate::policy::model::{
    DEFAULT_CLASSES, DEFAULT_MECHANICAL_MAX_MM, DEFAULT_OUT_OF_RANGE_MM, DEFAULT_QUALIFICATIONS,
    default_qualifications,
};
use crate::policy::{Fault, PolicyError};

/// The mechanical maximum in force, and where the file set it (if it did).
pub(super) struct Mechanical {
    /// The maximum (mm).
    pub(super) mm: f64,
    span: Option<Range<usize>>,
}

impl Mechanical {
    /// Reads `mechanical_max_mm`: a positive number, or the default.
    pub(super) fn read(c: &Checker<'_>, value: Option<&Spanned<f64>>) -> Result<Self, PolicyError> {
        let Some(v) = value else {
            return Ok(Mechanical {
                mm: DEFAULT_MECHANICAL_MAX_MM,
                span: None,
            });
        };
        let mm = *v.get_ref();
        if !(mm.is_finite() && mm > 0.0) {
            return Err(c.err(&v.span(), Fault::MechanicalMax { mm }));
        }
        Ok(Mechanical {
            mm,
            span: Some(v.span()),
        })
    }

    /// Checks that a default the file left alone fits under a lowered mechanical maximum;
    /// one that does not is blamed on `mechanical_max_mm`.
    fn default_fits(&self, c: &Checker<'_>, key: &str, default_mm: f64) -> Result<(), PolicyError> {
        match &self.span {
            Some(span) if default_mm > self.mm => Err(c.err(
                span,
                Fault::BelowDefault {
                    mechanical_max_mm: self.mm,
                    key: key.to_owned(),
                    default_mm,
                },
            )),
            _ => Ok(()),
        }
    }
}

/// Reads `out_of_range_mm`, or checks that its default fits.
pub(super) fn out_of_range(
    c: &Checker<'_>,
    value: Option<&Spanned<f64>>,
    mechanical: &Mechanical,
) -> Result<f64, PolicyError> {
    match value {
        Some(v) => c.limit("out_of_range_mm", v, mechanical.mm),
        None => {
            mechanical.default_fits(c, "out_of_range_mm", DEFAULT_OUT_OF_RANGE_MM)?;
            Ok(DEFAULT_OUT_OF_RANGE_MM)
        }
    }
}

/// Reads `[classes]`: the defaults, overridden key by key.
pub(super) fn classes(
    c: &Checker<'_>,
    table: &Entries<f64>,
    mechanical: &Mechanical,
) -> Result<Vec<(DeviceClass, f64)>, PolicyError> {
    let mut classes = DEFAULT_CLASSES.to_vec();
    let mut class_lines: Vec<(DeviceClass, usize)> = Vec::new();
    for (name, value) in &table.0 {
        let Some(class) = DeviceClass::parse_name(name.get_ref()) else {
            let fault = Fault::UnknownClass {
                name: name.get_ref().clone(),
            };
            return Err(c.err(&name.span(), fault));
        };
        if let Some((_, first)) = class_lines.iter().find(|(k, _)| *k == class) {
            let fault = Fault::ClassTwice {
                class: class.short_name().to_owned(),
                first: *first,
            };
            return Err(c.err(&name.span(), fault));
        }
        class_lines.push((class, c.line(&name.span())));
        let key = format!("[classes] {}", class.short_name());
        let mm = c.limit(&key, value, mechanical.mm)?;
        if let Some(slot) = classes.iter_mut().find(|(k, _)| *k == class) {
            slot.1 = mm;
        }
    }
    for (class, mm) in DEFAULT_CLASSES {
        if !class_lines.iter().any(|(k, _)| *k == class) {
            mechanical.default_fits(c, &format!("[classes] {}", class.short_name()), mm)?;
        }
    }
    Ok(classes)
}

/// Reads `[qualifications]`: the defaults, overridden or extended key by key.
pub(super) fn qualifications(
    c: &Checker<'_>,
    table: &Entries<f64>,
    mechanical: &Mechanical,
) -> Result<Vec<(String, f64)>, PolicyError> {
    let mut qualifications = default_qualifications();
    for (name, value) in &table.0 {
        let name = c.id("[qualifications]: qualification name", name)?;
        let mm = c.limit(&format!("[qualifications] {name}"), value, mechanical.mm)?;
        match qualifications.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = mm,
            None => qualifications.push((name, mm)),
        }
    }
    for (name, mm) in DEFAULT_QUALIFICATIONS {
        if !table.0.iter().any(|(n, _)| n.get_ref() == name) {
            mechanical.default_fits(c, &format!("[qualifications] {name}"), mm)?;
        }
    }
    Ok(qualifications)
}

/// Reads `[cartridge_models]`: a named model and its rated stroke life (at least 1).
pub(super) fn cartridge_models(
    c: &Checker<'_>,
    table: &Entries<u64>,
) -> Result<Vec<(String, u64)>, PolicyError> {
    let mut cartridge_models = Vec::new();
    for (model, strokes) in &table.0 {
        if model.get_ref().trim().is_empty() {
            return Err(c.err(&model.span(), Fault::EmptyCartridgeModel));
        }
        if *strokes.get_ref() == 0 {
            let fault = Fault::ZeroRatedStrokes {
                model: model.get_ref().clone(),
            };
            return Err(c.err(&strokes.span(), fault));
        }
        cartridge_models.push((model.get_ref().clone(), *strokes.get_ref()));
    }
    Ok(cartridge_models)
}

#[cfg(test)]
mod tests {
    use penwatch_proto::v1::Zone;

    use super::*;
    use crate::policy::fixtures::{assert_rejected, parse};

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
}
