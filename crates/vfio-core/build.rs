fn main() {
    // Only the Node addon needs napi's link setup; the pure core and its tests do not.
    if std::env::var_os("CARGO_FEATURE_NAPI").is_some() {
        napi_build::setup();
    }
}
