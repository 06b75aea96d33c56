//! Parsers of command-line values whose errors say in plain words what is wanted ("expected
//! a whole number ≥ 0") instead of Rust's ("invalid digit found in string").

use std::str::FromStr;

/// A count: `--limit 20`, `--batch 64`.
pub fn whole<T: FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number ≥ 0".to_string())
}

/// A real number: `--discard 0.9`, `--score-threshold 0.2`.
pub fn number<T: FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a number, such as 0.5".to_string())
}

/// A TCP port: `--port 8080`.
pub fn port(s: &str) -> Result<u16, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a port number from 0 to 65535".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_is_wanted() {
        assert_eq!(whole::<usize>("20"), Ok(20));
        assert_eq!(
            whole::<usize>("x").unwrap_err(),
            "expected a whole number ≥ 0"
        );
        assert!(whole::<usize>("2.5").is_err());
        assert_eq!(number::<f32>(" 0.9"), Ok(0.9));
        assert!(number::<f64>("high").unwrap_err().contains("a number"));
        assert_eq!(port("8080"), Ok(8080));
        assert!(port("99999").unwrap_err().contains("0 to 65535"));
    }
}
