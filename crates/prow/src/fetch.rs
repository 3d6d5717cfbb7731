//! GET a deck page within a deadline.

use std::time::Duration;

use crate::{parse_deck, DeckUrl, Error, Parsed};

/// The body of `url`, read whole within `timeout` (connect, headers and body
/// together). A status other than 2xx is an error naming it; so is a body that
/// ends before its announced length or final chunk (a cut download is never
/// handed on as a shorter page).
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<String, Error> {
    let request = async {
        let response = client
            .get(url)
            .header("Accept", "application/json, text/javascript, */*")
            .send()
            .await
            .map_err(|source| {
                let url = url.to_string();
                // Once connected, a failure is a broken answer, not an absent deck.
                if source.is_connect() || source.is_builder() {
                    Error::Unreachable { url, source }
                } else {
                    Error::Body { url, source }
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Status {
                url: url.to_string(),
                status: status.to_string(),
            });
        }
        response.text().await.map_err(|source| Error::Body {
            url: url.to_string(),
            source,
        })
    };
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result,
        Err(_elapsed) => Err(Error::Timeout {
            url: url.to_string(),
            timeout,
        }),
    }
}

/// Fetches the deck's job list and parses it (see [`parse_deck`]); a page that
/// is not a whole job list is an error naming the URL.
pub async fn read_deck(
    client: &reqwest::Client,
    deck: &DeckUrl,
    timeout: Duration,
) -> Result<Parsed, Error> {
    let page = fetch(client, &deck.prowjobs_url, timeout).await?;
    parse_deck(&page, Some(&deck.base)).map_err(|source| Error::Page {
        url: deck.prowjobs_url.clone(),
        source: Box::new(source),
    })
}
