//! Write LeForge ForgeHooks in Rust.
//!
//! An author writes plain functions over serde types and registers them as endpoints; the
//! SDK derives each endpoint's JSON Schemas (with schemars) into the manifest that the
//! component's `describe` export returns, and dispatches `invoke` by endpoint name. Input
//! that does not deserialize becomes an `INVALID_INPUT` error naming the offending field,
//! never a trap.
//!
//! ```ignore
//! use leforge_forgehook_sdk::{forgehook, Error, ForgeHook};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Greet { name: String }
//! #[derive(Serialize, JsonSchema)]
//! struct Greeting { text: String }
//!
//! fn greet(input: Greet) -> Result<Greeting, Error> {
//!     Ok(Greeting { text: format!("Hello, {}!", input.name) })
//! }
//!
//! fn hook() -> ForgeHook {
//!     ForgeHook::new("greeter", "Greeter", env!("CARGO_PKG_VERSION"))
//!         .description("Greets people.")
//!         .endpoint("greet", "Returns a greeting for `name`.", greet)
//! }
//!
//! forgehook!(hook);
//! ```
//!
//! Everything except the host functions works on the native target too, so endpoint logic
//! is unit-tested with plain `cargo test` through [`ForgeHook::invoke`].

// Lets the generated bindings and the exported macros name this crate the same way from
// inside and outside it.
extern crate self as leforge_forgehook_sdk;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

pub use schemars;
pub use serde;
pub use serde_json;

/// The bindings of the `leforge:forgehook@0.1.0` world, generated from host-api/wit.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "forgehook",
        pub_export_macro: true,
        export_macro_name: "__export_forgehook_world",
        default_bindings_module: "::leforge_forgehook_sdk::bindings",
        runtime_path: "::leforge_forgehook_sdk::__private::wit_bindgen::rt",
    });
}

/// The functions the host offers. Each is gated by the manifest's capabilities and the
/// host's configuration; they only work inside a component running on a LeForge host.
pub mod host {
    use crate::bindings::leforge::forgehook::host as raw;
    pub use crate::bindings::leforge::forgehook::host::{HttpRequest, HttpResponse, LogLevel};

    pub fn log(level: LogLevel, message: &str) {
        raw::log(level, message)
    }
    pub fn info(message: &str) {
        raw::log(LogLevel::Info, message)
    }
    pub fn warn(message: &str) {
        raw::log(LogLevel::Warn, message)
    }

    /// Sends an HTTP request to a host granted in `capabilities.allowed_hosts`.
    pub fn http_fetch(request: &HttpRequest) -> Result<HttpResponse, String> {
        raw::http_fetch(request)
    }

    /// A GET without headers or body.
    pub fn http_get(url: &str) -> Result<HttpResponse, String> {
        raw::http_fetch(&HttpRequest {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
        })
    }

    /// A configuration value declared in `capabilities.config`.
    pub fn config_get(key: &str) -> Option<String> {
        raw::config_get(key)
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        raw::now_ms()
    }
}

/// An error an endpoint returns; the host reports it as `GUEST_ERROR` with this code, except
/// `INVALID_INPUT`, which the host reports as invalid input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// UPPER_SNAKE_CASE, e.g. `NOT_FOUND`, `UPSTREAM_FAILED`.
    pub code: String,
    pub message: String,
}

impl Error {
    pub const INVALID_INPUT: &'static str = "INVALID_INPUT";
    pub const UNKNOWN_ENDPOINT: &'static str = "UNKNOWN_ENDPOINT";
    pub const INTERNAL: &'static str = "INTERNAL";

    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The input is well-formed JSON of the right shape but its values cannot be used.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_INPUT, message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

type Handler = Box<dyn Fn(&str) -> Result<String, Error>>;

struct EndpointDef {
    name: String,
    description: String,
    // Schemas are generated only when `describe` runs, so an `invoke` (a fresh instance per
    // call) does not pay for schema generation.
    input_schema: fn() -> Value,
    output_schema: fn() -> Value,
    handler: Handler,
}

/// A ForgeHook under construction: its manifest fields and its endpoints.
pub struct ForgeHook {
    meta: Map<String, Value>,
    allowed_hosts: Vec<String>,
    config: Vec<Value>,
    limits: Map<String, Value>,
    endpoints: Vec<EndpointDef>,
}

impl ForgeHook {
    /// `id`: lowercase words joined by hyphens (`data-transform`); `version`: semver, usually
    /// `env!("CARGO_PKG_VERSION")`.
    pub fn new(id: &str, name: &str, version: &str) -> Self {
        let mut meta = Map::new();
        meta.insert("id".into(), id.into());
        meta.insert("name".into(), name.into());
        meta.insert("version".into(), version.into());
        meta.insert("runtime".into(), "wasm".into());
        Self {
            meta,
            allowed_hosts: Vec::new(),
            config: Vec::new(),
            limits: Map::new(),
            endpoints: Vec::new(),
        }
    }

    pub fn description(mut self, text: &str) -> Self {
        self.meta.insert("description".into(), text.into());
        self
    }

    pub fn category(mut self, category: &str) -> Self {
        self.meta.insert("category".into(), category.into());
        self
    }

    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.meta.insert("tags".into(), json!(tags));
        self
    }

    pub fn author(mut self, author: &str) -> Self {
        self.meta.insert("author".into(), author.into());
        self
    }

    /// Asks for network access to an origin such as `https://api.example.com`.
    pub fn allow_host(mut self, origin: &str) -> Self {
        self.allowed_hosts.push(origin.into());
        self
    }

    /// Declares a configuration key read with [`host::config_get`]; undeclared keys read as
    /// `None`.
    pub fn config_key(mut self, name: &str, description: &str, required: bool) -> Self {
        self.config.push(json!({"name": name, "secret": false, "required": required, "description": description}));
        self
    }

    /// Like [`ForgeHook::config_key`] for a secret (an API key, a password).
    pub fn secret(mut self, name: &str, description: &str, required: bool) -> Self {
        self.config.push(
            json!({"name": name, "secret": true, "required": required, "description": description}),
        );
        self
    }

    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.limits.insert("timeout_ms".into(), ms.into());
        self
    }

    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.limits.insert("memory_mb".into(), mb.into());
        self
    }

    pub fn max_output_bytes(mut self, bytes: u64) -> Self {
        self.limits.insert("max_output_bytes".into(), bytes.into());
        self
    }

    /// Registers an endpoint. `name` is snake_case; `description` is what an LLM reads to
    /// decide when to call it. The input and output schemas come from `I` and `O`.
    pub fn endpoint<I, O, F>(mut self, name: &str, description: &str, handler: F) -> Self
    where
        I: DeserializeOwned + JsonSchema + 'static,
        O: Serialize + JsonSchema + 'static,
        F: Fn(I) -> Result<O, Error> + 'static,
    {
        let handler: Handler = Box::new(move |input: &str| {
            let de = &mut serde_json::Deserializer::from_str(input);
            let value: I = serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    Error::invalid_input(inner.to_string())
                } else {
                    Error::invalid_input(format!("at `{path}`: {inner}"))
                }
            })?;
            let output = handler(value)?;
            serde_json::to_string(&output).map_err(|e| {
                Error::new(Error::INTERNAL, format!("cannot serialize the output: {e}"))
            })
        });
        self.endpoints.push(EndpointDef {
            name: name.into(),
            description: description.into(),
            input_schema: schema_for::<I, true>,
            output_schema: schema_for::<O, false>,
            handler,
        });
        self
    }

    /// The manifest, with every endpoint's schemas, as `describe` returns it.
    pub fn manifest(&self) -> Value {
        let mut m = self.meta.clone();
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "description": e.description,
                    "input_schema": (e.input_schema)(),
                    "output_schema": (e.output_schema)(),
                })
            })
            .collect();
        m.insert("endpoints".into(), Value::Array(endpoints));
        m.insert(
            "capabilities".into(),
            json!({
                "allowed_hosts": self.allowed_hosts,
                "config": self.config,
                "limits": self.limits,
            }),
        );
        Value::Object(m)
    }

    pub fn manifest_json(&self) -> String {
        self.manifest().to_string()
    }

    /// Runs an endpoint on JSON text, exactly as the component's `invoke` export does.
    pub fn invoke(&self, endpoint: &str, input: &str) -> Result<String, Error> {
        match self.endpoints.iter().find(|e| e.name == endpoint) {
            Some(e) => (e.handler)(input),
            None => Err(Error::new(
                Error::UNKNOWN_ENDPOINT,
                format!(
                    "no endpoint named '{endpoint}'; this ForgeHook has: {}",
                    self.endpoints
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}

/// JSON Schema 2020-12 with sub-schemas inlined where possible, because LLM providers handle
/// `$ref` poorly. Input schemas describe what deserializes, output schemas what serializes.
fn schema_for<T: JsonSchema, const INPUT: bool>() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true);
    let settings = if INPUT {
        settings.for_deserialize()
    } else {
        settings.for_serialize()
    };
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Exports a ForgeHook as the component's `describe` and `invoke`. The argument is a function
/// `fn() -> ForgeHook` that builds it.
#[macro_export]
macro_rules! forgehook {
    ($build:path) => {
        #[allow(unsafe_code)]
        mod __leforge_forgehook_export {
            #[allow(unused_imports)]
            use super::*;

            struct Component;

            impl $crate::bindings::Guest for Component {
                fn describe() -> ::std::string::String {
                    $crate::__private::describe($build)
                }

                fn invoke(
                    endpoint: ::std::string::String,
                    input: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, $crate::bindings::ForgehookError>
                {
                    $crate::__private::invoke($build, &endpoint, &input)
                }
            }

            $crate::bindings::__export_forgehook_world!(Component with_types_in $crate::bindings);
        }
    };
}

/// Used by the `forgehook!` macro; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::bindings::ForgehookError;
    use crate::ForgeHook;

    pub fn describe(build: fn() -> ForgeHook) -> String {
        build().manifest_json()
    }

    pub fn invoke(
        build: fn() -> ForgeHook,
        endpoint: &str,
        input: &str,
    ) -> Result<String, ForgehookError> {
        build().invoke(endpoint, input).map_err(|e| ForgehookError {
            code: e.code,
            message: e.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, JsonSchema)]
    struct AddIn {
        a: i64,
        b: i64,
    }

    #[derive(Serialize, JsonSchema)]
    struct AddOut {
        sum: i64,
    }

    fn hook() -> ForgeHook {
        ForgeHook::new("calc", "Calc", "1.0.0")
            .description("Arithmetic.")
            .allow_host("https://api.example.com")
            .secret("api_key", "Key", true)
            .timeout_ms(1000)
            .endpoint("add", "Adds a and b.", |i: AddIn| {
                if i.a < 0 {
                    return Err(Error::new("NEGATIVE", "a is negative"));
                }
                Ok(AddOut { sum: i.a + i.b })
            })
    }

    #[test]
    fn dispatches_by_name_and_reports_bad_input() {
        let h = hook();
        assert_eq!(h.invoke("add", r#"{"a":1,"b":2}"#).unwrap(), r#"{"sum":3}"#);
        let err = h.invoke("add", r#"{"a":1,"b":"x"}"#).unwrap_err();
        assert_eq!(err.code, "INVALID_INPUT");
        assert!(
            err.message.starts_with("at `b`: invalid type"),
            "{}",
            err.message
        );
        let err = h.invoke("add", "not json").unwrap_err();
        assert_eq!(err.code, "INVALID_INPUT");
        assert_eq!(
            h.invoke("add", r#"{"a":-1,"b":2}"#).unwrap_err(),
            Error::new("NEGATIVE", "a is negative")
        );
        let err = h.invoke("sub", "{}").unwrap_err();
        assert_eq!(err.code, "UNKNOWN_ENDPOINT");
        assert!(err.message.ends_with("has: add"));
    }

    #[test]
    fn manifest_carries_schemas_and_capabilities() {
        let m = hook().manifest();
        assert_eq!(m["id"], "calc");
        assert_eq!(m["runtime"], "wasm");
        let ep = &m["endpoints"][0];
        assert_eq!(ep["name"], "add");
        assert_eq!(ep["input_schema"]["type"], "object");
        assert_eq!(ep["input_schema"]["required"], json!(["a", "b"]));
        assert_eq!(ep["output_schema"]["properties"]["sum"]["type"], "integer");
        assert_eq!(
            m["capabilities"]["allowed_hosts"],
            json!(["https://api.example.com"])
        );
        assert_eq!(m["capabilities"]["config"][0]["secret"], true);
        assert_eq!(m["capabilities"]["limits"], json!({"timeout_ms": 1000}));
    }
}
