fn main() {
    let k = flotilla_shared::api::Kind::lookup(&std::env::args().nth(1).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&k.json_schema()).unwrap());
}
