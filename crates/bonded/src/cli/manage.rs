//! `bonded login/logout` and the management commands (`user`, `robot`, `grant`, `key`, `audit`),
//! which speak the management API (`/api/v1/…`) with the stored credentials.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use reqwest::{header, Method};
use serde_json::{json, Value};

use super::auth::Auth;
use super::client::Client;
use super::credentials::{self, Creds};
use super::Conn;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin.
    Create {
        registry: String,
        name: String,
        /// Make the user a system admin (may do everything, manage accounts and grants).
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        conn: Conn,
    },
    List {
        registry: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a user and their grants.
    Delete {
        registry: String,
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum RobotCommand {
    /// Create a robot account for CI or deployments; prints its secret once.
    Create {
        registry: String,
        name: String,
        /// Days until the secret expires (0: never).
        #[arg(long, default_value_t = 90)]
        expires_in_days: u64,
        #[command(flatten)]
        conn: Conn,
    },
    List {
        registry: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a robot: its secret stops working at once.
    Revoke {
        registry: String,
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Grant ROLE (reader, developer, maintainer, admin) on NAMESPACE (`team-a/`, `ml/**`, a
    /// repository) to SUBJECT (an account, or `anonymous` for anonymous pull).
    Add {
        registry: String,
        namespace: String,
        subject: String,
        role: String,
        #[command(flatten)]
        conn: Conn,
    },
    Remove {
        registry: String,
        namespace: String,
        subject: String,
        #[command(flatten)]
        conn: Conn,
    },
    List {
        registry: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Rotate the token signing key; tokens signed by the old key stay valid until they expire.
    Rotate {
        registry: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print audit entries (newest last), filtered; `--jsonl` prints one JSON object per line
    /// (for a SIEM), `--follow` keeps polling for new entries.
    Query {
        registry: String,
        #[arg(long)]
        repository: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        /// Start of the time range: Unix milliseconds, or an age such as `30m`, `2h`, `7d`.
        #[arg(long)]
        since: Option<String>,
        /// End of the time range (exclusive), same forms.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        jsonl: bool,
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Check the hash chain and its signed checkpoints; exits 1 if anything was edited, removed
    /// or reordered.
    Verify {
        registry: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub(super) fn client(registry: &str, conn: &Conn) -> anyhow::Result<Client> {
    Client::new(registry.trim_end_matches('/'), conn.plain_http)
}

/// One management API call; errors come back as the API's envelope, shown as text.
pub(super) async fn api(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut rb = c
        .http()
        .request(method, format!("{}/api/v1{path}", c.base()));
    if let Some(h) = c.basic_header() {
        rb = rb.header(header::AUTHORIZATION, h);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let v: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !status.is_success() {
        let code = v
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let msg = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no details");
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("{code}: {msg} (run `bonded login {}` first)", c.base());
        }
        bail!("{code}: {msg}");
    }
    Ok(v)
}

fn read_secret_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let s = line.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        bail!("no password on stdin (pipe it in: echo \"$PASSWORD\" | bonded …)");
    }
    Ok(s)
}

/// `bonded login REGISTRY -u NAME` (secret on stdin): checks the credentials, then stores them.
pub async fn login(registry: &str, username: &str, conn: &Conn) -> anyhow::Result<ExitCode> {
    let host = registry.trim_end_matches('/');
    let creds = Creds {
        username: username.to_string(),
        secret: read_secret_line()?,
    };
    let c = client(host, conn)?;
    let auth = Auth::new(Some(creds.clone()));
    let enforced = auth.check(c.http(), c.base()).await?;
    let path = credentials::store(host, creds)?;
    if enforced {
        println!("Login succeeded; credentials stored in {}", path.display());
    } else {
        println!(
            "{host} has access control off; credentials stored in {} anyway",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn logout(registry: &str) -> anyhow::Result<ExitCode> {
    let host = registry.trim_end_matches('/');
    if credentials::remove(host)? {
        println!("removed the credentials for {host}");
    } else {
        println!("no credentials stored for {host}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn user(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Create {
            registry,
            name,
            admin,
            conn,
        } => {
            let password = read_secret_line()?;
            let c = client(&registry, &conn)?;
            let body = json!({ "name": name, "password": password, "system_admin": admin });
            api(&c, Method::POST, "/users", Some(body)).await?;
            println!("created user {name}");
        }
        UserCommand::List { registry, conn } => {
            let c = client(&registry, &conn)?;
            let v = api(&c, Method::GET, "/users", None).await?;
            for u in v["users"].as_array().into_iter().flatten() {
                let admin = if u["system_admin"].as_bool() == Some(true) {
                    "  (system admin)"
                } else {
                    ""
                };
                println!("{}{admin}", u["name"].as_str().unwrap_or("?"));
            }
        }
        UserCommand::Delete {
            registry,
            name,
            conn,
        } => {
            let c = client(&registry, &conn)?;
            api(&c, Method::DELETE, &format!("/users/{name}"), None).await?;
            println!("deleted user {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn robot(cmd: RobotCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RobotCommand::Create {
            registry,
            name,
            expires_in_days,
            conn,
        } => {
            let c = client(&registry, &conn)?;
            let body = json!({ "name": name, "expires_in_days": expires_in_days });
            let v = api(&c, Method::POST, "/robots", Some(body)).await?;
            let secret = v["secret"]
                .as_str()
                .ok_or_else(|| anyhow!("the registry returned no secret"))?;
            eprintln!("created robot {name}; its secret (shown only now) is on stdout");
            println!("{secret}");
        }
        RobotCommand::List { registry, conn } => {
            let c = client(&registry, &conn)?;
            let v = api(&c, Method::GET, "/robots", None).await?;
            for r in v["robots"].as_array().into_iter().flatten() {
                let state = if r["revoked"].as_bool() == Some(true) {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}\t{state}\texpires_at_ms={}",
                    r["name"].as_str().unwrap_or("?"),
                    r["expires_at_ms"]
                );
            }
        }
        RobotCommand::Revoke {
            registry,
            name,
            conn,
        } => {
            let c = client(&registry, &conn)?;
            api(&c, Method::POST, &format!("/robots/{name}/revoke"), None).await?;
            println!("revoked robot {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn grant(cmd: GrantCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GrantCommand::Add {
            registry,
            namespace,
            subject,
            role,
            conn,
        } => {
            let c = client(&registry, &conn)?;
            let body = json!({ "namespace": namespace, "subject": subject, "role": role });
            api(&c, Method::POST, "/grants", Some(body)).await?;
            println!("granted {role} on {namespace} to {subject}");
        }
        GrantCommand::Remove {
            registry,
            namespace,
            subject,
            conn,
        } => {
            let c = client(&registry, &conn)?;
            let q = serde_urlencoded(&[("namespace", &namespace), ("subject", &subject)]);
            api(&c, Method::DELETE, &format!("/grants?{q}"), None).await?;
            println!("removed the grant on {namespace} from {subject}");
        }
        GrantCommand::List { registry, conn } => {
            let c = client(&registry, &conn)?;
            let v = api(&c, Method::GET, "/grants", None).await?;
            for g in v["grants"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}",
                    g["namespace"].as_str().unwrap_or("?"),
                    g["subject"].as_str().unwrap_or("?"),
                    g["role"].as_str().unwrap_or("?")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn key(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Rotate { registry, conn } => {
            let c = client(&registry, &conn)?;
            let v = api(&c, Method::POST, "/signing-keys/rotate", None).await?;
            println!("new signing key {}", v["kid"].as_str().unwrap_or("?"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `1700000000000` stays; `30m`, `2h`, `7d` become now minus that, in Unix milliseconds.
fn time_arg(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is neither Unix milliseconds nor an age like 30m, 2h, 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("{s:?}: the unit must be s, m, h or d"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    Ok(now - secs * 1000)
}

fn serde_urlencoded(pairs: &[(&str, &String)]) -> String {
    let owned: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    query(&owned)
}

/// A URL-encoded query string.
pub(super) fn query(pairs: &[(&str, String)]) -> String {
    let mut u = reqwest::Url::parse("http://x/").expect("static URL");
    u.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    u.query().unwrap_or("").to_string()
}

pub async fn audit(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { registry, conn } => {
            let c = client(&registry, &conn)?;
            let v = api(&c, Method::GET, "/audit/verify", None).await?;
            let entries = v["entries"].as_i64().unwrap_or(0);
            let checkpoints = v["checkpoints"].as_i64().unwrap_or(0);
            if v["intact"].as_bool() == Some(true) {
                println!("audit log intact: {entries} entries, {checkpoints} signed checkpoints");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("audit log TAMPERED ({entries} entries, {checkpoints} checkpoints):");
                for p in v["problems"].as_array().into_iter().flatten() {
                    println!("  {}", p.as_str().unwrap_or("?"));
                }
                Ok(ExitCode::FAILURE)
            }
        }
        AuditCommand::Query {
            registry,
            repository,
            actor,
            action,
            since,
            until,
            jsonl,
            follow,
            conn,
        } => {
            let c = client(&registry, &conn)?;
            let mut params: Vec<(&str, String)> = vec![];
            if let Some(r) = repository {
                params.push(("repository", r));
            }
            if let Some(a) = actor {
                params.push(("actor", a));
            }
            if let Some(a) = action {
                params.push(("action", a));
            }
            if let Some(s) = since {
                params.push(("since", time_arg(&s)?.to_string()));
            }
            if let Some(u) = until {
                params.push(("until", time_arg(&u)?.to_string()));
            }
            let mut after = 0i64;
            loop {
                let mut p = params.clone();
                p.push(("after", after.to_string()));
                let owned: Vec<(&str, String)> = p;
                let refs: Vec<(&str, &String)> = owned.iter().map(|(k, v)| (*k, v)).collect();
                let v = api(
                    &c,
                    Method::GET,
                    &format!("/audit?{}", serde_urlencoded(&refs)),
                    None,
                )
                .await?;
                let entries = v["entries"].as_array().cloned().unwrap_or_default();
                for e in &entries {
                    if jsonl {
                        println!("{e}");
                    } else {
                        println!(
                            "{:>6} {} {:<10} {:<14} {:<24} {:<20} {:<8} {} {}",
                            e["seq"],
                            e["at_ms"],
                            e["actor"].as_str().unwrap_or(""),
                            e["action"].as_str().unwrap_or(""),
                            e["repository"].as_str().unwrap_or(""),
                            e["target"].as_str().unwrap_or(""),
                            e["outcome"].as_str().unwrap_or(""),
                            e["source"].as_str().unwrap_or(""),
                            e["detail"].as_str().unwrap_or("")
                        );
                    }
                }
                match v["next_after"].as_i64() {
                    Some(n) => after = n,
                    None if follow => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
                    None => break,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
