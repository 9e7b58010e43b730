//! The canary analysis metric source for a Prometheus-compatible server: range queries through
//! `GET /api/v1/query_range`. The server's URL comes from configuration only (`[canary]
//! prometheus_url`), never from a request, so the API cannot be used to make bonded fetch
//! arbitrary URLs.

use std::time::Duration;

use bonded_service::promotion::{MetricSource, QueryWindow};
use serde_json::Value;

/// Most samples taken from one query (all series together).
const MAX_SAMPLES: usize = 2000;

pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    pub fn new(url: &str) -> Prometheus {
        Prometheus {
            base: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }
}

/// The sample values of a `query_range` response (`resultType` `matrix`), in series order.
fn values(body: &Value) -> Result<Vec<f64>, String> {
    if body.get("status").and_then(Value::as_str) != Some("success") {
        let why = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no status \"success\"");
        return Err(format!("Prometheus answered: {why}"));
    }
    let series = body
        .pointer("/data/result")
        .and_then(Value::as_array)
        .ok_or("the response has no data.result")?;
    let mut out = Vec::new();
    for s in series {
        for v in s
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // [ <unix time>, "<value>" ]
            let Some(x) = v
                .get(1)
                .and_then(Value::as_str)
                .and_then(|x| x.parse::<f64>().ok())
            else {
                continue;
            };
            if x.is_finite() {
                out.push(x);
            }
            if out.len() >= MAX_SAMPLES {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl MetricSource for Prometheus {
    async fn range(&self, query: &str, w: QueryWindow) -> Result<Vec<f64>, String> {
        let url = format!("{}/api/v1/query_range", self.base);
        let resp = self
            .http
            .get(&url)
            .query(&[
                ("query", query.to_string()),
                ("start", w.start.to_string()),
                ("end", w.end.to_string()),
                ("step", w.step_secs.to_string()),
            ])
            .send()
            .await
            .map_err(|e| format!("querying {url}: {e}"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("{url} answered {status} without JSON: {e}"))?;
        values(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_values_are_read_in_order_and_errors_say_why() {
        let body: Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{"a":"1"},"values":[[1,"0.5"],[2,"NaN"],[3,"1.5"]]},
                {"metric":{"a":"2"},"values":[[1,"2"]]}]}}"#,
        )
        .unwrap();
        assert_eq!(values(&body).unwrap(), [0.5, 1.5, 2.0]);
        let err: Value =
            serde_json::from_str(r#"{"status":"error","error":"parse error at char 3"}"#).unwrap();
        assert!(values(&err).unwrap_err().contains("parse error"));
    }
}
