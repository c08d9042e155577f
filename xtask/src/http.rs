//! A minimal HTTP/1.1 client over `std::net`, enough to probe the test server
//! and create a bucket: bodiless requests to 127.0.0.1, status code only.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Timeout for connecting, writing and reading, per request.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Longest status line accepted before giving up.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Sends `METHOD PATH HTTP/1.1` with an empty body to `127.0.0.1:port` and
/// returns the status code of the answer.
pub(crate) fn request(port: u16, method: &str, path: &str) -> Result<u16, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|err| format!("cannot set timeouts on the connection to {addr}: {err}"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|err| format!("cannot send `{method} {path}` to {addr}: {err}"))?;

    let mut answer = Vec::new();
    let mut chunk = [0_u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < MAX_STATUS_LINE {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err) => {
                return Err(format!("no answer from {addr} to `{method} {path}`: {err}"));
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let line = text.lines().next().unwrap_or_default();
    parse_status_line(line).ok_or_else(|| {
        format!("{addr} answered `{method} {path}` with something else than HTTP: {line:?}")
    })
}

/// The status code of an HTTP/1.x status line such as `HTTP/1.1 200 OK`.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    let code = parts.next()?;
    let valid = version.starts_with("HTTP/1.")
        && code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 404 Not Found"), Some(404));
        assert_eq!(parse_status_line("HTTP/1.1 409"), Some(409));
        assert_eq!(parse_status_line("HTTP/2 200"), None);
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 20x OK"), None);
        assert_eq!(parse_status_line(""), None);
    }

    #[test]
    fn sends_a_request_and_reads_the_status() -> Result<(), String> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|err| err.to_string())?;
        let port = listener.local_addr().map_err(|err| err.to_string())?.port();
        let server = std::thread::spawn(move || -> std::io::Result<String> {
            let (stream, _) = listener.accept()?;
            let mut reader = std::io::BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line)?;
            let mut line = String::new();
            while reader.read_line(&mut line)? > 2 {
                line.clear();
            }
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")?;
            Ok(request_line)
        });
        let status = request(port, "PUT", "/bucket")?;
        let request_line = server
            .join()
            .map_err(|_| "server thread panicked".to_owned())?
            .map_err(|err| err.to_string())?;
        assert_eq!(status, 201);
        assert_eq!(request_line, "PUT /bucket HTTP/1.1\r\n");
        Ok(())
    }
}
