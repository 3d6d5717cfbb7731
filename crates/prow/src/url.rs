//! Where a deck's job list lives, from what a person copies out of a browser.

use reqwest::Url;

use crate::Error;

/// Fields left out of `prowjobs.js`: they are large and builds do not use them.
const OMIT: &str = "omit=annotations,labels,decoration_config,pod_spec";

/// The job list to fetch, the deck it belongs to and the job glob of the UI URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeckUrl {
    /// `.../prowjobs.js?...`, what to GET.
    pub prowjobs_url: String,
    /// The deck's root (no trailing `/`), for `{base}/prowjob?prowjob=NAME` links.
    pub base: String,
    /// The `job` query parameter of a deck UI URL (`?job=*oadp*`), if any.
    pub job: Option<String>,
}

/// Reads a deck UI URL (`https://prow.example.com/?job=*oadp*`, fetched as its
/// `prowjobs.js` without the bulky fields) or a `/prowjobs.js` URL (kept as it is,
/// query included).
pub fn deck_url(input: &str) -> Result<DeckUrl, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(input.trim()).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(&format!(
            "scheme {} is not http or https",
            url.scheme()
        )));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(invalid("no host"));
    };
    let origin = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    if let Some(prefix) = url.path().strip_suffix("/prowjobs.js") {
        return Ok(DeckUrl {
            prowjobs_url: url.to_string(),
            base: format!("{origin}{prefix}"),
            job: None,
        });
    }
    let base = format!("{origin}{}", url.path().trim_end_matches('/'));
    let job = url
        .query_pairs()
        .find(|(k, v)| k == "job" && !v.is_empty())
        .map(|(_, v)| v.into_owned());
    Ok(DeckUrl {
        prowjobs_url: format!("{base}/prowjobs.js?{OMIT}"),
        base,
        job,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deck_ui_url_becomes_its_job_list_and_glob() {
        let d = deck_url("https://prow.ci.openshift.org/?job=*oadp*").unwrap();
        assert_eq!(
            d.prowjobs_url,
            "https://prow.ci.openshift.org/prowjobs.js?omit=annotations,labels,decoration_config,pod_spec"
        );
        assert_eq!(d.base, "https://prow.ci.openshift.org");
        assert_eq!(d.job.as_deref(), Some("*oadp*"));

        let d = deck_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(d.base, "http://127.0.0.1:8080");
        assert_eq!(d.job, None);
    }

    #[test]
    fn a_prowjobs_url_is_kept_with_its_query() {
        let d = deck_url("https://deck.example.com/prow/prowjobs.js?var=allBuilds").unwrap();
        assert_eq!(
            d.prowjobs_url,
            "https://deck.example.com/prow/prowjobs.js?var=allBuilds"
        );
        assert_eq!(d.base, "https://deck.example.com/prow");
    }

    #[test]
    fn other_urls_are_refused_with_the_reason() {
        let err = deck_url("ftp://prow.example.com/").unwrap_err().to_string();
        assert!(err.contains("scheme ftp is not http or https"), "{err}");
        let err = deck_url("prow.example.com").unwrap_err().to_string();
        assert!(err.contains("relative URL without a base"), "{err}");
        assert!(deck_url("file:///tmp/x").is_err());
    }
}
