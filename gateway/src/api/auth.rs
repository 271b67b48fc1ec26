//! Bearer tokens, roles, clinic scope and operator pseudonyms.
//!
//! A token is looked up by its SHA-256, so the configured secrets are not kept in memory as
//! plain map keys. A caller's [`Caller::selection`] turns a request [`Filter`] into a
//! journal [`Selection`] confined to its clinics: asking for a clinic outside the scope is
//! `PERMISSION_DENIED`, asking for nothing in particular means "all my clinics".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use penwatch_proto::names::ShortName;
use penwatch_proto::topic::is_valid_id;
use penwatch_proto::v1::{DeviceClass, Filter};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::{ApiConfig, invalid, limits, secret};
use crate::invalid::Invalid;
use crate::journal::queries::Selection;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Their clinics only: fleet, sessions, violations, operators, cartridges, export.
    ClinicManager,
    /// Devices and cartridges across the fleet; operator ids pseudonymised.
    Manufacturer,
    /// Read everything, export, verify and sign reviews.
    Reviewer,
    /// Everything, plus policy validation.
    Admin,
}

impl Role {
    /// `clinic-manager`, `manufacturer`, `reviewer` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ClinicManager => "clinic-manager",
            Role::Manufacturer => "manufacturer",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    /// Whether the role reads policy texts (reviewer, admin): they name every clinic's staff.
    pub fn reads_policy_text(self) -> bool {
        matches!(self, Role::Reviewer | Role::Admin)
    }
}

/// Keyed hash for operator pseudonyms (HMAC-SHA-256).
#[derive(Clone)]
pub struct Pseudonymizer(Hmac<Sha256>);

impl Pseudonymizer {
    /// A pseudonymizer with this secret key.
    pub fn new(key: &[u8]) -> Self {
        Self(Hmac::new_from_slice(key).expect("HMAC takes a key of any length"))
    }

    /// `op-` and 10 hex digits of the keyed hash of `clinic/operator`; "" stays "".
    pub fn pseudonym(&self, clinic_id: &str, operator_id: &str) -> String {
        if operator_id.is_empty() {
            return String::new();
        }
        let mut mac = self.0.clone();
        mac.update(clinic_id.as_bytes());
        mac.update(b"/");
        mac.update(operator_id.as_bytes());
        let digest = hex::encode(mac.finalize().into_bytes());
        format!("op-{}", &digest[..10])
    }
}

/// Who is calling: a configured token's name, role and scope.
#[derive(Clone)]
pub struct Caller {
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Clinics in scope; empty means all.
    pub clinics: Vec<String>,
    pseudonyms: Option<Pseudonymizer>,
}

impl Caller {
    /// A caller with this role and scope; `pseudonyms` is required for manufacturers.
    pub fn new(
        name: &str,
        role: Role,
        clinics: Vec<String>,
        pseudonyms: Option<Pseudonymizer>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            role,
            clinics,
            pseudonyms,
        }
    }

    /// `PERMISSION_DENIED` unless the caller's role is one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), Status> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(Status::permission_denied(format!(
                "{what} needs the role {}; token {:?} is {}",
                allowed.join(" or "),
                self.name,
                self.role.as_str()
            )))
        }
    }

    /// Whether rows of this clinic are in scope.
    pub fn sees_clinic(&self, clinic_id: &str) -> bool {
        self.clinics.is_empty() || self.clinics.iter().any(|c| c == clinic_id)
    }

    /// Whether every clinic is in scope.
    pub fn sees_every_clinic(&self) -> bool {
        self.clinics.is_empty()
    }

    /// `PERMISSION_DENIED` unless the clinic is in scope.
    pub fn check_clinic(&self, clinic_id: &str) -> Result<(), Status> {
        if self.sees_clinic(clinic_id) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "clinic {} is outside the scope of token {:?}",
                limits::quote(clinic_id),
                self.name
            )))
        }
    }

    /// Whether operator ids are pseudonymised for this caller.
    pub fn pseudonymised(&self) -> bool {
        self.role == Role::Manufacturer
    }

    /// The operator id as this caller may see it.
    pub fn operator(&self, clinic_id: &str, operator_id: &str) -> String {
        if !self.pseudonymised() || operator_id.is_empty() {
            return operator_id.to_owned();
        }
        match &self.pseudonyms {
            Some(p) => p.pseudonym(clinic_id, operator_id),
            None => String::new(),
        }
    }

    /// The request filter confined to this caller's scope; lists and ids beyond the
    /// [`limits`] are `INVALID_ARGUMENT`.
    pub fn selection(&self, filter: Option<&Filter>) -> Result<Selection, Status> {
        let default = Filter::default();
        let f = filter.unwrap_or(&default);
        limits::check_ids("filter.clinic_ids", &f.clinic_ids)?;
        limits::check_ids("filter.device_ids", &f.device_ids)?;
        limits::check_ids("filter.operator_ids", &f.operator_ids)?;
        limits::check_ids("filter.device_classes", &f.device_classes)?;
        let clinics = if f.clinic_ids.is_empty() {
            (!self.clinics.is_empty()).then(|| self.clinics.clone())
        } else {
            for c in &f.clinic_ids {
                self.check_clinic(c)?;
            }
            Some(f.clinic_ids.clone())
        };
        if self.pseudonymised() && !f.operator_ids.is_empty() {
            return Err(Status::permission_denied(
                "operator identities are not available to manufacturer tokens: remove the operator filter",
            ));
        }
        let classes = f
            .device_classes
            .iter()
            .map(|c| {
                DeviceClass::parse_name(c)
                    .map(|c| c.short_name().to_owned())
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "device class {}: expected one of {}",
                            limits::quote(c),
                            DeviceClass::expected()
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        if f.from_ms != 0 && f.to_ms != 0 && f.from_ms >= f.to_ms {
            return Err(Status::invalid_argument(
                "filter from_ms must be before to_ms",
            ));
        }
        Ok(Selection {
            clinics,
            devices: f.device_ids.clone(),
            operators: f.operator_ids.clone(),
            classes,
            from_ms: (f.from_ms != 0).then_some(f.from_ms),
            to_ms: (f.to_ms != 0).then_some(f.to_ms),
            only_exceeded: f.only_exceeded,
        })
    }
}

/// The configured tokens.
pub struct Auth {
    tokens: HashMap<[u8; 32], Arc<Caller>>,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Resolves and checks `[api]` tokens and the pseudonym key; the error says what to fix.
    pub fn from_config(config: &ApiConfig) -> Result<Self, Invalid> {
        let key = secret(
            "api.pseudonym_key",
            config.pseudonym_key.as_ref(),
            config.pseudonym_key_env.as_deref(),
        )?;
        let pseudonyms = key.map(|k| Pseudonymizer::new(k.as_bytes()));
        let mut tokens = HashMap::new();
        let mut names = HashSet::new();
        for (i, t) in config.tokens.iter().enumerate() {
            let what = format!("api.tokens[{i}] ({:?})", t.name);
            if t.name.trim().is_empty() {
                return Err(invalid(&what, "give the token a name"));
            }
            if !names.insert(t.name.as_str()) {
                return Err(invalid(
                    &what,
                    "another token has the same name; names must be unique",
                ));
            }
            let value = secret(
                &format!("{what} token"),
                t.token.as_ref(),
                t.token_env.as_deref(),
            )?
            .ok_or_else(|| invalid(&what, "set token = \"…\" or token_env = \"VARIABLE\""))?;
            if t.role == Role::ClinicManager && t.clinics.is_empty() {
                return Err(invalid(
                    &what,
                    "a clinic-manager token needs clinics = [\"…\"]",
                ));
            }
            if let Some(bad) = t.clinics.iter().find(|c| !is_valid_id(c)) {
                return Err(invalid(&what, format!("{bad:?} is not a valid clinic id")));
            }
            if t.role == Role::Manufacturer && pseudonyms.is_none() {
                return Err(invalid(
                    &what,
                    "manufacturer tokens see operator pseudonyms: set api.pseudonym_key \
                     (or api.pseudonym_key_env), a stable secret of at least 16 characters",
                ));
            }
            let caller = Caller::new(&t.name, t.role, t.clinics.clone(), pseudonyms.clone());
            if tokens
                .insert(token_hash(&value), Arc::new(caller))
                .is_some()
            {
                return Err(invalid(
                    &what,
                    "the same token value is configured twice; give each token its own",
                ));
            }
        }
        Ok(Self { tokens })
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller of a request: `UNAUTHENTICATED` without a known bearer token.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Arc<Caller>, Status> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing credentials: send metadata `authorization: Bearer <token>`",
                )
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("authorization metadata must be `Bearer <token>`")
            })?;
        self.tokens
            .get(&token_hash(token.trim()))
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Secret, TokenConfig};
    use super::*;

    fn token(name: &str, role: Role, clinics: &[&str]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            token: Some(Secret(format!("{name}-secret-token-value"))),
            token_env: None,
            role,
            clinics: clinics.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn config() -> ApiConfig {
        ApiConfig {
            pseudonym_key: Some(Secret("a-stable-pseudonym-key".into())),
            tokens: vec![
                token("mgr", Role::ClinicManager, &["c01"]),
                token("maker", Role::Manufacturer, &[]),
                token("rev", Role::Reviewer, &[]),
            ],
            ..ApiConfig::default()
        }
    }

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("ascii"));
        m
    }

    #[test]
    fn tokens_resolve_to_callers() {
        let auth = Auth::from_config(&config()).expect("valid");
        let mgr = auth
            .caller(&metadata("Bearer mgr-secret-token-value"))
            .expect("known");
        assert_eq!(
            (mgr.role, mgr.clinics.clone()),
            (Role::ClinicManager, vec!["c01".to_owned()])
        );
        let code = |m: &MetadataMap| auth.caller(m).err().map(|s| s.code());
        assert_eq!(
            code(&MetadataMap::new()),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&metadata("Bearer nope")),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&metadata("mgr-secret-token-value")),
            Some(tonic::Code::Unauthenticated)
        );
    }

    #[test]
    fn scope_confines_the_filter() {
        let auth = Auth::from_config(&config()).expect("valid");
        let mgr = auth
            .caller(&metadata("Bearer mgr-secret-token-value"))
            .expect("known");
        let sel = mgr.selection(None).expect("in scope");
        assert_eq!(sel.clinics, Some(vec!["c01".to_owned()]));
        let other = Filter {
            clinic_ids: vec!["c01".into(), "c02".into()],
            ..Filter::default()
        };
        assert_eq!(
            mgr.selection(Some(&other)).err().map(|s| s.code()),
            Some(tonic::Code::PermissionDenied)
        );
        let rev = auth
            .caller(&metadata("Bearer rev-secret-token-value"))
            .expect("known");
        assert_eq!(rev.selection(None).expect("all").clinics, None);
        let bad_class = Filter {
            device_classes: vec!["toy".into()],
            ..Filter::default()
        };
        assert_eq!(
            rev.selection(Some(&bad_class)).err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
        assert!(rev.require(&[Role::Admin], "ValidatePolicy").is_err());
        assert!(
            rev.require(&[Role::Reviewer, Role::Admin], "Verify")
                .is_ok()
        );
    }

    #[test]
    fn manufacturers_see_stable_pseudonyms_only() {
        let auth = Auth::from_config(&config()).expect("valid");
        let maker = auth
            .caller(&metadata("Bearer maker-secret-token-value"))
            .expect("known");
        let p = maker.operator("c01", "op-c01-1");
        assert!(p.starts_with("op-") && p.len() == 13, "{p}");
        assert_ne!(p, "op-c01-1");
        assert_eq!(p, maker.operator("c01", "op-c01-1"));
        assert_ne!(p, maker.operator("c02", "op-c01-1"));
        assert_eq!(maker.operator("c01", ""), "");
        let again = Auth::from_config(&config()).expect("valid");
        let maker2 = again
            .caller(&metadata("Bearer maker-secret-token-value"))
            .expect("known");
        assert_eq!(
            p,
            maker2.operator("c01", "op-c01-1"),
            "stable across restarts"
        );
        let with_op = Filter {
            operator_ids: vec!["op-c01-1".into()],
            ..Filter::default()
        };
        assert_eq!(
            maker.selection(Some(&with_op)).err().map(|s| s.code()),
            Some(tonic::Code::PermissionDenied)
        );
        let rev = auth
            .caller(&metadata("Bearer rev-secret-token-value"))
            .expect("known");
        assert_eq!(rev.operator("c01", "op-c01-1"), "op-c01-1");
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let mut mac = Pseudonymizer::new(&[0x0b; 20]).0;
        mac.update(b"Hi There");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn a_pseudonym_is_the_keyed_hash_of_clinic_and_operator_whatever_the_key_length() {
        let short = Pseudonymizer::new(&[b'k'; 20]);
        assert_eq!(short.pseudonym("c01", "op-c01-1"), "op-1d4e6e290c");
        let long = Pseudonymizer::new(&[b'x'; 100]);
        assert_eq!(long.pseudonym("c01", "op-c01-1"), "op-d226fd6a48");
        assert_eq!(long.pseudonym("c01", ""), "");
    }

    #[test]
    fn config_errors_say_what_to_fix() {
        let err = |c: &ApiConfig| {
            Auth::from_config(c)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let mut c = config();
        c.pseudonym_key = None;
        assert!(err(&c).contains("set api.pseudonym_key"), "{}", err(&c));
        let mut c = config();
        c.tokens[0].clinics.clear();
        assert!(err(&c).contains("needs clinics"), "{}", err(&c));
        let mut c = config();
        c.tokens[1].token = Some(Secret("short".into()));
        assert!(err(&c).contains("at least 16 characters"), "{}", err(&c));
        let mut c = config();
        c.tokens[1].token = c.tokens[0].token.clone();
        assert!(err(&c).contains("configured twice"), "{}", err(&c));
        let mut c = config();
        c.tokens[2].token = None;
        c.tokens[2].token_env = Some("PENWATCH_TEST_NO_SUCH_VARIABLE".into());
        assert!(
            err(&c).contains("PENWATCH_TEST_NO_SUCH_VARIABLE is not set"),
            "{}",
            err(&c)
        );
        let mut c = config();
        c.tokens[2].token = None;
        assert!(err(&c).contains("token_env"), "{}", err(&c));
        let parsed: Result<ApiConfig, _> = toml::from_str(
            "[[tokens]]\nname = \"x\"\ntoken = \"0123456789abcdef\"\nrole = \"boss\"\n",
        );
        let msg = parsed.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("clinic-manager"), "{msg}");
    }
}
