//! Who is scanning. Staff roles come from the signed-in session; everybody else is anonymous and is
//! served the operator/public view. A role decides which manual audiences it may read.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Anonymous,
    Operator,
    Technician,
    Biomed,
    Clinician,
    Patient,
    Agent,
    /// Content editor: keeps the manuals (`/admin/manuals`).
    Editor,
    Admin,
}

pub const ALL_ROLES: [Role; 9] = [
    Role::Anonymous,
    Role::Operator,
    Role::Technician,
    Role::Biomed,
    Role::Clinician,
    Role::Patient,
    Role::Agent,
    Role::Editor,
    Role::Admin,
];

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Anonymous => "anonymous",
            Role::Operator => "operator",
            Role::Technician => "technician",
            Role::Biomed => "biomed",
            Role::Clinician => "clinician",
            Role::Patient => "patient",
            Role::Agent => "agent",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// The manual audiences this role reads. Sections with no audience are for everybody.
    pub fn audiences(self) -> &'static [&'static str] {
        match self {
            Role::Anonymous | Role::Operator | Role::Patient => &["operator", "public", "patient"],
            Role::Clinician => &["clinician", "operator", "public", "patient"],
            Role::Technician => &["technician", "operator", "public"],
            Role::Biomed => &["biomed", "technician", "clinician", "operator", "public"],
            // Support agents, editors and admins work on every audience.
            Role::Agent | Role::Editor | Role::Admin => &[
                "technician",
                "biomed",
                "clinician",
                "operator",
                "public",
                "patient",
            ],
        }
    }

    pub fn may_read(self, section_audiences: &[String]) -> bool {
        section_audiences.is_empty()
            || section_audiences
                .iter()
                .any(|a| self.audiences().contains(&a.as_str()))
    }

    /// Staff roles sign in; anonymous and patients never hold a staff account.
    pub fn is_staff(self) -> bool {
        !matches!(self, Role::Anonymous | Role::Patient)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_ROLES
            .iter()
            .copied()
            .find(|r| r.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}: use one of {}",
                    ALL_ROLES.map(|r| r.as_str()).join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_audience_a_role_reads_is_one_a_manual_can_name() {
        // The manual checker refuses audiences outside this list; a role granted another would
        // be granted nothing.
        for role in ALL_ROLES {
            for audience in role.audiences() {
                assert!(
                    scanaid_indexer::manual::AUDIENCES.contains(audience),
                    "{role:?}: {audience}"
                );
            }
        }
    }

    #[test]
    fn operators_never_read_technician_sections_and_technicians_do() {
        let technical = a(&["technician", "biomed"]);
        assert!(!Role::Anonymous.may_read(&technical));
        assert!(!Role::Operator.may_read(&technical));
        assert!(Role::Technician.may_read(&technical));
        assert!(Role::Biomed.may_read(&technical));
        assert!(Role::Operator.may_read(&a(&["clinician", "operator"])));
        assert!(Role::Anonymous.may_read(&[]));
        assert!(!Role::Technician.may_read(&a(&["clinician"])));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for r in ALL_ROLES {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("janitor".parse::<Role>().is_err());
    }
}
