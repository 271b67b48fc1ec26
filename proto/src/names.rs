//! Short names of enum values: `DeviceClass::Medical` is `"medical"`,
//! `Event::SessionStart` is `"session_start"`, `Zone::Periorbital` is `"periorbital"`.
//!
//! These are the names used in JSON payloads, configuration files and reports. Parsing
//! also accepts the full protobuf name (`"DEVICE_CLASS_MEDICAL"`), in any case.

use crate::v1::{DeviceClass, Event, Zone};

/// An enum of the wire contract whose values have short lowercase names.
pub trait ShortName: Sized + Copy + 'static {
    /// Prefix of the protobuf value names (`"DEVICE_CLASS_"`).
    const PREFIX: &'static str;
    /// Every value except the `*_UNSPECIFIED` zero value.
    const ALL: &'static [Self];
    /// The protobuf value name (`"DEVICE_CLASS_HOME"`).
    fn full_name(self) -> &'static str;
    /// The value for a protobuf value name.
    fn from_full_name(name: &str) -> Option<Self>;

    /// The short lowercase name (`"home"`; `"unspecified"` for the zero value).
    fn short_name(self) -> &'static str;

    /// Parses a short or full name, in any case. The `*_UNSPECIFIED` value is not accepted.
    fn parse_name(name: &str) -> Option<Self> {
        let upper = name.trim().to_ascii_uppercase();
        let full = if upper.starts_with(Self::PREFIX) {
            upper
        } else {
            format!("{}{upper}", Self::PREFIX)
        };
        Self::from_full_name(&full)
            .filter(|v| Self::ALL.iter().any(|a| a.full_name() == v.full_name()))
    }

    /// The accepted short names, comma separated, for error messages.
    fn expected() -> String {
        Self::ALL
            .iter()
            .map(|v| v.short_name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

macro_rules! short_name {
    ($ty:ty, $prefix:literal, [$($v:ident => $short:literal),+ $(,)?]) => {
        impl ShortName for $ty {
            const PREFIX: &'static str = $prefix;
            const ALL: &'static [Self] = &[$(<$ty>::$v),+];
            fn full_name(self) -> &'static str {
                self.as_str_name()
            }
            fn short_name(self) -> &'static str {
                match self {
                    $(<$ty>::$v => $short,)+
                    _ => "unspecified",
                }
            }
            fn from_full_name(name: &str) -> Option<Self> {
                Self::from_str_name(name)
            }
        }
    };
}

short_name!(
    DeviceClass,
    "DEVICE_CLASS_",
    [Home => "home", Salon => "salon", Medical => "medical"]
);
short_name!(
    Event,
    "EVENT_",
    [
        Sample => "sample",
        SessionStart => "session_start",
        SessionEnd => "session_end",
        CartridgeInserted => "cartridge_inserted"
    ]
);
short_name!(
    Zone,
    "ZONE_",
    [
        Forehead => "forehead",
        Periorbital => "periorbital",
        Cheek => "cheek",
        Perioral => "perioral",
        Nose => "nose",
        Chin => "chin",
        Neck => "neck",
        Scalp => "scalp",
        Body => "body",
        Scar => "scar"
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_round_trip() {
        for c in DeviceClass::ALL {
            assert_eq!(DeviceClass::parse_name(c.short_name()), Some(*c));
        }
        for e in Event::ALL {
            assert_eq!(Event::parse_name(e.short_name()), Some(*e));
        }
        for z in Zone::ALL {
            assert_eq!(Zone::parse_name(z.short_name()), Some(*z));
        }
        assert_eq!(Event::SessionStart.short_name(), "session_start");
    }

    fn is_lowercase_full_name<T: ShortName>() -> bool {
        T::ALL.iter().all(|v| {
            let full = v.full_name().strip_prefix(T::PREFIX).unwrap_or_default();
            v.short_name() == full.to_ascii_lowercase()
        })
    }

    #[test]
    fn every_short_name_is_its_full_name_without_prefix_in_lowercase() {
        assert!(is_lowercase_full_name::<DeviceClass>());
        assert!(is_lowercase_full_name::<Event>());
        assert!(is_lowercase_full_name::<Zone>());
    }

    #[test]
    fn full_names_and_case_are_accepted_unspecified_is_not() {
        assert_eq!(
            DeviceClass::parse_name("DEVICE_CLASS_SALON"),
            Some(DeviceClass::Salon)
        );
        assert_eq!(
            DeviceClass::parse_name("Medical"),
            Some(DeviceClass::Medical)
        );
        assert_eq!(DeviceClass::parse_name("unspecified"), None);
        assert_eq!(DeviceClass::parse_name("spa"), None);
        assert_eq!(DeviceClass::expected(), "home, salon, medical");
    }
}
