//! rust-add-header: add-header (plugins/examples/add-header/plugin.c) in Rust. Sets a request
//! header before the upstream and a response header after it.
//!
//! Config (all optional):
//!   request-header / request-value    default x-wharf-plugin: rust-add-header
//!   response-header / response-value  default x-wharf-served-by: wharf
//!   debug-state = "1"                 also answer x-wharf-state: path=<request path>;calls=<n>
//!                                     (state kept from on-request to on-response of a request)
//!
//! Built by scripts/build-plugins with Debian's rustc 1.63, no cargo (plugins/README.md).

#[path = "../rust-sdk/wharf.rs"]
mod wharf;

use std::cell::RefCell;

use wharf::bindings::Guest;
use wharf::{config, continue_with, response_headers, set_header, Request, RequestAction};
use wharf::{Response, ResponseAction};

thread_local! {
    // (path seen by on-request, calls): one instance serves one request.
    static SEEN: RefCell<(String, u32)> = RefCell::new((String::new(), 0));
}

struct Plugin;

impl Guest for Plugin {
    fn on_request(req: Request) -> RequestAction {
        SEEN.with(|s| {
            let mut s = s.borrow_mut();
            s.0 = req.path;
            s.1 += 1;
        });
        continue_with(vec![set_header(
            config("request-header", "x-wharf-plugin"),
            config("request-value", "rust-add-header"),
        )])
    }

    fn on_response(_resp: Response) -> ResponseAction {
        let mut ops = vec![set_header(
            config("response-header", "x-wharf-served-by"),
            config("response-value", "wharf"),
        )];
        if config("debug-state", "0") == "1" {
            let state = SEEN.with(|s| {
                let s = s.borrow();
                format!("path={};calls={}", s.0, s.1)
            });
            ops.push(set_header("x-wharf-state", state));
        }
        response_headers(ops)
    }
}

wharf::bindings::export!(Plugin with_types_in wharf::bindings);
