//! Sizes of the deployable artefacts `make build` writes:
//! `<target>/lambda/<function>/bootstrap.zip` (arm64), and the `bootstrap`
//! inside it.

use std::path::Path;

/// One function's artefact; `None` where it is missing.
#[derive(Debug, Clone)]
pub struct Artefact {
    pub function: String,
    /// The uncompressed `bootstrap`, as Lambda unpacks it.
    pub bootstrap: Option<u64>,
    pub zip: Option<u64>,
}

pub fn measure(lambda_dir: &Path, function: &str) -> Artefact {
    let dir = lambda_dir.join(function);
    let zip = std::fs::read(dir.join("bootstrap.zip")).ok();
    let bootstrap = zip
        .as_deref()
        .and_then(|zip| entry_size(zip, "bootstrap"))
        .or_else(|| {
            std::fs::metadata(dir.join("bootstrap"))
                .ok()
                .map(|m| m.len())
        });
    Artefact {
        function: function.to_string(),
        bootstrap,
        zip: zip.map(|z| z.len() as u64),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 2)?;
    Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at + 4)?;
    Some(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// The uncompressed size of the entry `name`, from the zip's central
/// directory (zip32, which is what an archive under 4 GiB uses).
fn entry_size(zip: &[u8], name: &str) -> Option<u64> {
    const END: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const ENTRY: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    let end = zip.windows(4).rposition(|w| w == END)?;
    let entries = u16_at(zip, end + 10)?;
    let mut at = usize::try_from(u32_at(zip, end + 16)?).ok()?;
    for _ in 0..entries {
        if zip.get(at..at + 4)? != ENTRY {
            return None;
        }
        let size = u32_at(zip, at + 24)?;
        let name_len = u16_at(zip, at + 28)?;
        let extra_len = u16_at(zip, at + 30)?;
        let comment_len = u16_at(zip, at + 32)?;
        if zip.get(at + 46..at + 46 + name_len)? == name.as_bytes() {
            return Some(size);
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    None
}

/// Megabytes (10^6 bytes) with two decimals.
pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored (uncompressed) zip holding `entries`, laid out as the zip
    /// specification says: local headers and data, central directory, end
    /// record.
    fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let (mut zip, mut central) = (Vec::new(), Vec::new());
        for (name, data) in entries {
            let offset = zip.len() as u32;
            let size = (data.len() as u32).to_le_bytes();
            let name_len = (name.len() as u16).to_le_bytes();
            zip.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            zip.extend_from_slice(&[0; 4]); // crc (not checked here)
            zip.extend_from_slice(&size);
            zip.extend_from_slice(&size);
            zip.extend_from_slice(&name_len);
            zip.extend_from_slice(&[0, 0]);
            zip.extend_from_slice(name.as_bytes());
            zip.extend_from_slice(data);
            central
                .extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&[0; 4]);
            central.extend_from_slice(&size);
            central.extend_from_slice(&size);
            central.extend_from_slice(&name_len);
            central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let central_at = zip.len() as u32;
        let count = (entries.len() as u16).to_le_bytes();
        zip.extend_from_slice(&central);
        zip.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
        zip.extend_from_slice(&count);
        zip.extend_from_slice(&count);
        zip.extend_from_slice(&(central.len() as u32).to_le_bytes());
        zip.extend_from_slice(&central_at.to_le_bytes());
        zip.extend_from_slice(&[0, 0]);
        zip
    }

    #[test]
    fn finds_the_entry_in_the_central_directory() {
        let zip = stored_zip(&[("README", b"hello"), ("bootstrap", &[7u8; 1234])]);
        assert_eq!(entry_size(&zip, "bootstrap"), Some(1234));
        assert_eq!(entry_size(&zip, "README"), Some(5));
        assert_eq!(entry_size(&zip, "missing"), None);
        assert_eq!(entry_size(b"not a zip", "bootstrap"), None);
    }

    #[test]
    fn measures_a_function_directory() {
        let root =
            std::env::temp_dir().join(format!("kiln-bench-artefacts-{}", std::process::id()));
        let dir = root.join("fn");
        std::fs::create_dir_all(&dir).unwrap();
        let zip = stored_zip(&[("bootstrap", &[1u8; 4321])]);
        std::fs::write(dir.join("bootstrap.zip"), &zip).unwrap();
        let artefact = measure(&root, "fn");
        assert_eq!(artefact.bootstrap, Some(4321));
        assert_eq!(artefact.zip, Some(zip.len() as u64));
        assert_eq!(measure(&root, "absent").zip, None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
