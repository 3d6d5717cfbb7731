//! Builds as time series points: measurement `build`, tags `job_name`,
//! `job_type`, `state`; fields `build_id` (string), `pull_request` (integer),
//! `duration_s` (float), `state_int` (integer), `log_url` (string); timestamp =
//! start time in ns. The line protocol itself is [`rota_sink::Point::line`].

use rota_sink::Point;

use crate::Build;

/// The point of one build. Fields without a value (no pull request, still
/// running, no log yet) are left out; an empty tag value is left out of the line
/// by [`Point::line`].
pub fn build_point(build: &Build) -> Point {
    let mut point = Point::new("build", build.started_at_ns())
        .tag("job_name", build.job.as_str())
        .tag("job_type", build.job_type.as_str())
        .tag("state", build.state.as_str())
        .field("build_id", build.build_id.as_str());
    if let Some(pr) = build.pull_request {
        // Pull request numbers are far below i64::MAX; saturate rather than wrap.
        point = point.field("pull_request", i64::try_from(pr).unwrap_or(i64::MAX));
    }
    if let Some(d) = build.duration_s {
        point = point.field("duration_s", d);
    }
    point = point.field("state_int", build.state_int);
    if let Some(url) = &build.log_url {
        point = point.field("log_url", url.as_str());
    }
    point
}

/// Every build as a line of line protocol, each ending with `\n`.
pub fn influx_lines(builds: &[Build]) -> String {
    builds
        .iter()
        .map(|b| build_point(b).line() + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn build(job: &str) -> Build {
        Build {
            build_id: "17".into(),
            job: job.into(),
            job_type: "presubmit".into(),
            state: "success".into(),
            state_int: 0,
            org: None,
            repo: None,
            pull_request: Some(5),
            started_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            finished_at: None,
            duration_s: Some(61.5),
            log_url: Some("https://l/og?a=\"b\"\\c".into()),
            prowjob_url: None,
        }
    }

    #[test]
    fn nasty_names_are_escaped() {
        let b = build("job, with=all kinds\\of \"stuff\"");
        // 2026-01-02T03:04:05Z is 1767323045 s after the epoch.
        assert_eq!(
            influx_lines(&[b]),
            "build,job_name=job\\,\\ with\\=all\\ kinds\\of\\ \"stuff\",\
             job_type=presubmit,state=success \
             build_id=\"17\",pull_request=5i,duration_s=61.5,state_int=0i,\
             log_url=\"https://l/og?a=\\\"b\\\"\\\\c\" 1767323045000000000\n"
        );
    }

    #[test]
    fn absent_values_are_left_out() {
        let mut b = build("j");
        b.pull_request = None;
        b.duration_s = None;
        b.log_url = None;
        b.state = String::new();
        b.build_id = "a\"b".into();
        let point = build_point(&b);
        point.validate().unwrap();
        assert_eq!(
            point.line(),
            "build,job_name=j,job_type=presubmit build_id=\"a\\\"b\",state_int=0i 1767323045000000000"
        );
    }
}
