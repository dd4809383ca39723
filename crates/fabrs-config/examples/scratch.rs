fn main() {
    let cases: Vec<(&str, String)> = vec![
        ("multi", "a: 1\n---\nb: 2\n".into()),
        ("bigint", "version: 99999999999999999999\n".into()),
        ("bigint2", "version: 18446744073709551615\n".into()),
        ("bigint3", "version: 9223372036854775808\n".into()),
        ("bom", "\u{feff}version: 1\n".into()),
        ("nbsp", "network:\n\u{a0}\u{a0}vpc: x\n".into()),
        ("tab", "network:\n\tvpc: x\n".into()),
        ("crlf", "version: 1\r\nproject: x\r\n".into()),
        ("bomb", "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n".into()),
        ("json", "{\"version\": 1, \"project\": \"x\"}".into()),
        ("float", "version: 1e400\n".into()),
        ("nul", "version: 1\u{0}\n".into()),
        ("deep", format!("a: {}{}\n", "[".repeat(300), "]".repeat(300))),
    ];
    for (name, src) in cases {
        match fabrs_config::load_str(&src, std::path::Path::new("x.yaml"), std::path::Path::new("/tmp")) {
            Ok(_) => println!("{name}: ok"),
            Err(d) => {
                for x in d.diagnostics.iter().take(3) {
                    println!("{name}: {}", x.short());
                }
            }
        }
    }
}
