//! A component of a different world, for the install-validation tests.

wit_bindgen::generate!({ path: "wit", world: "other" });

struct Other;

impl Guest for Other {
    fn run() -> String {
        test::other::gadget::frobnicate(1).to_string()
    }
}

export!(Other);
