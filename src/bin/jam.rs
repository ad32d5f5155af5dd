//! `jam`: the jam client. For now it asks a server for the time once.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let target = std::env::args()
        .skip(1)
        .find(|a| a != "time")
        .unwrap_or_else(|| "127.0.0.1:45000".to_string());
    let stream =
        TcpStream::connect(&target).with_context(|| format!("cannot connect to {target}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    (&stream).write_all(b"TIME\r\nQUIT\r\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    println!("{}", line.trim_end());
    Ok(())
}
