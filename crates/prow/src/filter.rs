//! Choosing builds: a job-name glob, job types and states.

use crate::Build;

/// Which builds to keep. An empty list or no glob keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `*` matches any run of characters, `?` one character; the rest is literal.
    pub job_glob: Option<String>,
    /// presubmit, postsubmit, periodic, batch.
    pub types: Vec<String>,
    pub states: Vec<String>,
}

impl Filter {
    pub fn matches(&self, build: &Build) -> bool {
        self.job_glob
            .as_deref()
            .is_none_or(|glob| glob_match(glob, &build.job))
            && (self.types.is_empty() || self.types.contains(&build.job_type))
            && (self.states.is_empty() || self.states.contains(&build.state))
    }

    pub fn apply(&self, builds: Vec<Build>) -> Vec<Build> {
        builds.into_iter().filter(|b| self.matches(b)).collect()
    }
}

/// Whole-string glob match: `*` any run of characters, `?` one, `[...]` one of a
/// class (the same globs as file_sd paths, see [`rota_core::glob`]).
pub fn glob_match(glob: &str, text: &str) -> bool {
    rota_core::glob::matches(glob, text)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(
            "*oadp*",
            "pull-ci-openshift-oadp-operator-master-lint"
        ));
        assert!(glob_match("*oadp*", "oadp"));
        assert!(!glob_match("*oadp*", "pull-ci-openshift-origin"));
        assert!(glob_match("pull-*-e2e-?ws", "pull-ci-x-e2e-aws"));
        assert!(!glob_match("pull-*-e2e-?ws", "pull-ci-x-e2e-gcp"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("a*b*c", "a-b-b-c"));
        assert!(!glob_match("a*b*c", "a-b-b-cd"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("é?", "éü"));
        assert!(glob_match("pull-[ab]*", "pull-b-x"));
    }
}
