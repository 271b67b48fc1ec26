//! The simulated fleet: clinics, their pens and their operators, generated deterministically
//! from a seed. The same `(seed, clinics, pens per clinic)` always gives the same fleet,
//! whatever scenarios run on it, so `--print-policy` and a run agree.

use penwatch_proto::v1::DeviceClass;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// RNG stream of the fleet layout (pens and scenarios use other streams of the same seed).
const FLEET_STREAM: u64 = 0;

/// An operator qualification, which sets the operator's default maximum depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Qualification {
    /// Under supervision: 0.5 mm.
    Trainee,
    /// Non-medical, trained: 1.0 mm.
    AestheticPractitioner,
    /// 1.5 mm.
    AdvancedPractitioner,
    /// Doctor, nurse, qualified clinician: 2.5 mm.
    Clinician,
}

impl Qualification {
    /// Every qualification, most restrictive first.
    pub const ALL: [Self; 4] = [
        Self::Trainee,
        Self::AestheticPractitioner,
        Self::AdvancedPractitioner,
        Self::Clinician,
    ];

    /// The name used in the policy file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Trainee => "trainee",
            Self::AestheticPractitioner => "aesthetic_practitioner",
            Self::AdvancedPractitioner => "advanced_practitioner",
            Self::Clinician => "clinician",
        }
    }

    /// Default maximum depth in millimetres.
    pub fn limit_mm(self) -> f64 {
        match self {
            Self::Trainee => 0.5,
            Self::AestheticPractitioner => 1.0,
            Self::AdvancedPractitioner => 1.5,
            Self::Clinician => 2.5,
        }
    }

    /// A personal cap below this qualification's limit (while being signed off), if one fits.
    fn personal_cap_mm(self) -> Option<f64> {
        match self {
            Self::Trainee => None,
            Self::AestheticPractitioner => Some(0.8),
            Self::AdvancedPractitioner => Some(1.2),
            Self::Clinician => Some(2.0),
        }
    }
}

/// A staff member of a clinic who may hold a pen.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// Staff id, `op-c01-1`.
    pub id: String,
    /// Clinic employing the operator.
    pub clinic_id: String,
    /// Qualification.
    pub qualification: Qualification,
    /// Personal cap below the qualification's limit, if any.
    pub cap_mm: Option<f64>,
}

impl Operator {
    /// The operator's maximum depth: the personal cap if set, else the qualification's.
    pub fn limit_mm(&self) -> f64 {
        let q = self.qualification.limit_mm();
        self.cap_mm.map_or(q, |c| c.min(q))
    }
}

/// A microneedling pen.
#[derive(Debug, Clone, PartialEq)]
pub struct Pen {
    /// Serial, `pen-c01-01`.
    pub id: String,
    /// Clinic owning the pen.
    pub clinic_id: String,
    /// Position in the fleet (0-based, clinic by clinic), which picks the pen's RNG stream.
    pub index: usize,
    /// Device class.
    pub class: DeviceClass,
    /// Model name.
    pub model: &'static str,
    /// Firmware version.
    pub firmware: &'static str,
    /// Depth setting step of the model (0.25 or 0.1 mm).
    pub depth_step_mm: f64,
}

/// A clinic with its pens and operators.
#[derive(Debug, Clone, PartialEq)]
pub struct Clinic {
    /// Clinic id, `c01`.
    pub id: String,
    /// Pens owned by the clinic.
    pub pens: Vec<Pen>,
    /// Operators working at the clinic (3 or 4).
    pub operators: Vec<Operator>,
}

/// The whole simulated fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Seed the fleet was generated from.
    pub seed: u64,
    /// Clinics, `c01` first.
    pub clinics: Vec<Clinic>,
}

/// Pen models per class: name and depth step.
fn models(class: DeviceClass) -> &'static [(&'static str, f64)] {
    match class {
        DeviceClass::Home => &[("GlowPen Home", 0.25)],
        DeviceClass::Salon => &[("DermaPro S", 0.25), ("DermaPro S2", 0.1)],
        _ => &[("DermaMed M3", 0.1), ("DermaMed M2", 0.25)],
    }
}

const FIRMWARES: [&str; 3] = ["2.1.0", "2.2.3", "3.0.1"];
const CLASSES: [DeviceClass; 3] = [DeviceClass::Home, DeviceClass::Salon, DeviceClass::Medical];

impl Fleet {
    /// Generates the fleet of `clinics` clinics with `pens_per_clinic` pens each.
    pub fn generate(seed: u64, clinics: u32, pens_per_clinic: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(FLEET_STREAM);
        let mut index = 0;
        let clinics = (1..=clinics)
            .map(|c| {
                let clinic_id = format!("c{c:02}");
                let mut classes: Vec<DeviceClass> = (0..pens_per_clinic as usize)
                    .map(|i| match CLASSES.get(i) {
                        Some(class) => *class,
                        None => CLASSES[rng.random_range(0..CLASSES.len())],
                    })
                    .collect();
                classes.shuffle(&mut rng);
                let pens = classes
                    .into_iter()
                    .enumerate()
                    .map(|(i, class)| {
                        let (model, step) = models(class)[rng.random_range(0..models(class).len())];
                        let pen = Pen {
                            id: format!("pen-{clinic_id}-{:02}", i + 1),
                            clinic_id: clinic_id.clone(),
                            index,
                            class,
                            model,
                            firmware: FIRMWARES[rng.random_range(0..FIRMWARES.len())],
                            depth_step_mm: step,
                        };
                        index += 1;
                        pen
                    })
                    .collect();
                let operators = operators(&mut rng, &clinic_id);
                Clinic {
                    id: clinic_id,
                    pens,
                    operators,
                }
            })
            .collect();
        Self { seed, clinics }
    }

    /// Every pen, clinic by clinic.
    pub fn pens(&self) -> impl Iterator<Item = &Pen> {
        self.clinics.iter().flat_map(|c| c.pens.iter())
    }

    /// Number of pens.
    pub fn pen_count(&self) -> usize {
        self.clinics.iter().map(|c| c.pens.len()).sum()
    }

    /// The clinic with this id.
    pub fn clinic(&self, id: &str) -> Option<&Clinic> {
        self.clinics.iter().find(|c| c.id == id)
    }
}

/// 3 or 4 operators: the first a clinician, the second not, the rest any; the last one
/// carries a personal cap when their qualification allows one.
fn operators(rng: &mut ChaCha8Rng, clinic_id: &str) -> Vec<Operator> {
    let count = rng.random_range(3..=4);
    (1..=count)
        .map(|n| {
            let qualification = match n {
                1 => Qualification::Clinician,
                2 => Qualification::ALL[rng.random_range(0..3)],
                _ => Qualification::ALL[rng.random_range(0..Qualification::ALL.len())],
            };
            let cap_mm = if n == count {
                qualification.personal_cap_mm()
            } else {
                None
            };
            Operator {
                id: format!("op-{clinic_id}-{n}"),
                clinic_id: clinic_id.to_owned(),
                qualification,
                cap_mm,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_fleet_other_seed_other_fleet() {
        assert_eq!(Fleet::generate(7, 3, 4), Fleet::generate(7, 3, 4));
        assert_ne!(Fleet::generate(7, 3, 4), Fleet::generate(8, 3, 4));
    }

    #[test]
    fn ids_classes_and_operators() {
        let fleet = Fleet::generate(42, 2, 5);
        assert_eq!(fleet.pen_count(), 10);
        assert_eq!(fleet.clinics[1].id, "c02");
        assert_eq!(fleet.clinics[0].pens[0].id, "pen-c01-01");
        assert_eq!(fleet.clinics[1].pens[4].id, "pen-c02-05");
        for clinic in &fleet.clinics {
            for class in CLASSES {
                assert!(
                    clinic.pens.iter().any(|p| p.class == class),
                    "{} lacks {class:?}",
                    clinic.id
                );
            }
            assert!((3..=4).contains(&clinic.operators.len()));
            assert_eq!(clinic.operators[0].id, format!("op-{}-1", clinic.id));
            let quals: std::collections::BTreeSet<_> =
                clinic.operators.iter().map(|o| o.qualification).collect();
            assert!(quals.len() >= 2, "mixed qualifications");
            for op in &clinic.operators {
                assert!(op.cap_mm.is_none_or(|c| c < op.qualification.limit_mm()));
            }
        }
        let indices: Vec<usize> = fleet.pens().map(|p| p.index).collect();
        assert_eq!(indices, (0..10).collect::<Vec<_>>());
    }
}
