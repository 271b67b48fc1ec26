//! Judging one sample: the permitted depth is the lowest of the class, operator, zone and
//! out-of-range limits and of the clinic's jurisdiction, and the rule that set it is the
//! binding one.

use std::fmt;

use penwatch_proto::v1::{DeviceClass, Zone};

use super::{Jurisdiction, Operator, Policy, SCOTLAND_SPECIFIED_MM};

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
    /// Scotland's Non-surgical Procedures Act 2026: from 1.5 mm microneedling is a specified
    /// procedure, only by a healthcare professional in registered premises.
    Scotland2026,
}

impl Rule {
    /// The name used in records and reports: `"class"`, `"operator"`, `"zone"`,
    /// `"out_of_range"`, `"scotland_2026"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Class => "class",
            Rule::Operator => "operator",
            Rule::Zone => "zone",
            Rule::OutOfRange => "out_of_range",
            Rule::Scotland2026 => "scotland_2026",
        }
    }

    /// Whether reaching the limit already breaks the rule (a jurisdiction's "to a depth of
    /// 1.5 mm or more"), rather than only going above it.
    pub fn reaching_breaks(self) -> bool {
        self == Rule::Scotland2026
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

impl Policy {
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
        // Reaching a jurisdiction's limit already breaks it, so it wins a tie.
        if let Some((limit, rule)) = self.jurisdiction_limit(s.clinic_id, operator)
            && limit <= permitted_mm
        {
            permitted_mm = limit;
            binding = rule;
        }
        let exceeded =
            s.depth_mm > permitted_mm || (binding.reaching_breaks() && s.depth_mm >= permitted_mm);

        Judgement {
            permitted_mm,
            binding,
            class,
            exceeded: s.depth_mm > 0.0 && exceeded,
            unknown_operator: operator.is_none(),
            unregistered_device: device.is_none(),
            class_mismatch: device.is_some_and(|d| {
                s.claimed_class != DeviceClass::Unspecified && s.claimed_class != d.class
            }),
        }
    }

    /// The limit a clinic's jurisdiction sets for this operator, if any: in Scotland,
    /// 1.5 mm (reached is broken) unless a healthcare professional treats in registered
    /// premises. An operator the policy does not know is not a healthcare professional.
    fn jurisdiction_limit(
        &self,
        clinic_id: &str,
        operator: Option<&Operator>,
    ) -> Option<(f64, Rule)> {
        let clinic = self.clinic(clinic_id)?;
        match clinic.jurisdiction? {
            Jurisdiction::Scotland => {
                let allowed = clinic.registered_premises
                    && operator.is_some_and(|o| o.healthcare_professional);
                (!allowed).then_some((SCOTLAND_SPECIFIED_MM, Rule::Scotland2026))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::{EXAMPLE, parse};

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

    /// A Scottish clinic (c03) and an English one (c04) with the same staff: a clinician who
    /// is a healthcare professional, one who is not, and an advanced practitioner.
    fn scottish(registered: bool) -> Policy {
        let staff = |clinic: &str| {
            format!(
                "[[operators]]\nid = \"doctor\"\nclinic = \"{clinic}\"\nqualification = \"clinician\"\n\
                 healthcare_professional = true\n\n\
                 [[operators]]\nid = \"clinician\"\nclinic = \"{clinic}\"\nqualification = \"clinician\"\n\n\
                 [[operators]]\nid = \"advanced\"\nclinic = \"{clinic}\"\n\
                 qualification = \"advanced_practitioner\"\nhealthcare_professional = true\n\n"
            )
        };
        parse(&format!(
            "{}{}[clinics.c03]\njurisdiction = \"scotland\"\nregistered_premises = {registered}\n\n\
             [clinics.c04]\nregistered_premises = {registered}\n\n[zones.c03]\nperiorbital = 0.5\n",
            staff("c03"),
            staff("c04")
        ))
    }

    fn at(
        clinic_id: &'static str,
        operator_id: &'static str,
        depth_mm: f64,
    ) -> SampleContext<'static> {
        SampleContext {
            clinic_id,
            device_id: "pen",
            claimed_class: DeviceClass::Medical,
            operator_id,
            zone: None,
            depth_mm,
        }
    }

    #[test]
    fn in_scotland_reaching_1_5_mm_needs_a_healthcare_professional_in_registered_premises() {
        let registered = scottish(true);
        // Not a healthcare professional: 1.5 mm is reached, so the rule is broken at 1.5.
        let j = registered.judge(&at("c03", "clinician", 1.5));
        assert_eq!((j.permitted_mm, j.binding), (1.5, Rule::Scotland2026));
        assert!(j.exceeded, "reaching 1.5 mm is the specified procedure");
        let j = registered.judge(&at("c03", "clinician", 1.4));
        assert_eq!(j.binding, Rule::Scotland2026);
        assert!(!j.exceeded);
        // An unknown operator is no healthcare professional either (0.5 mm binds first).
        let j = registered.judge(&at("c03", "nobody", 1.5));
        assert_eq!((j.binding, j.exceeded), (Rule::Operator, true));
        // A healthcare professional in registered premises: only class and qualification.
        let j = registered.judge(&at("c03", "doctor", 2.0));
        assert_eq!(
            (j.permitted_mm, j.binding, j.exceeded),
            (2.5, Rule::Class, false)
        );
        // Premises not registered: even the doctor is flagged from 1.5 mm.
        let unregistered = scottish(false);
        let j = unregistered.judge(&at("c03", "doctor", 1.5));
        assert_eq!(
            (j.permitted_mm, j.binding, j.exceeded),
            (1.5, Rule::Scotland2026, true)
        );
        // Outside Scotland the same people and premises are judged as before.
        for policy in [&registered, &unregistered] {
            let j = policy.judge(&at("c04", "clinician", 2.0));
            assert_eq!(
                (j.permitted_mm, j.binding, j.exceeded),
                (2.5, Rule::Class, false)
            );
        }
    }

    #[test]
    fn the_scottish_rule_wins_a_tie_and_a_stricter_limit_still_binds() {
        let unregistered = scottish(false);
        // The advanced practitioner's own limit is 1.5 mm too: at 1.5 only Scotland is broken.
        let j = unregistered.judge(&at("c03", "advanced", 1.5));
        assert_eq!(
            (j.permitted_mm, j.binding, j.exceeded),
            (1.5, Rule::Scotland2026, true)
        );
        // A zone ceiling below 1.5 mm binds first.
        let mut s = at("c03", "clinician", 0.75);
        s.zone = Some(Zone::Periorbital);
        let j = unregistered.judge(&s);
        assert_eq!(
            (j.permitted_mm, j.binding, j.exceeded),
            (0.5, Rule::Zone, true)
        );
        // Retracted needles are never a procedure.
        let j = unregistered.judge(&at("c03", "clinician", 0.0));
        assert!(!j.exceeded);
    }

    #[test]
    fn rule_names() {
        let names: Vec<String> = [
            Rule::Class,
            Rule::Operator,
            Rule::Zone,
            Rule::OutOfRange,
            Rule::Scotland2026,
        ]
        .iter()
        .map(|r| format!("{r}/{}", r.as_str()))
        .collect();
        assert_eq!(
            names,
            [
                "class/class",
                "operator/operator",
                "zone/zone",
                "out_of_range/out_of_range",
                "scotland_2026/scotland_2026"
            ]
        );
    }
}
