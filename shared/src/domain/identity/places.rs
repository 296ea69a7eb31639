//! Places: Meta CT / ST / ZIP / COUNTRY rules and the tables behind them.

use std::str::FromStr;

use super::squash;

/// Letters only, lowercase: no digits, spaces or punctuation; accents kept.
fn letters_only(raw: &str) -> Option<String> {
    let s: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect();
    Some(s).filter(|s| !s.is_empty())
}

/// Meta CT: lowercase, no digits, spaces or punctuation, as Meta's own SDKs
/// do ("San Francisco" -> "sanfrancisco", "Seattle-98121" -> "seattle").
pub fn normalize_city(raw: &str) -> Option<String> {
    letters_only(raw)
}

/// US states, DC and territories: (code, name without spaces).
const US_STATES: &[(&str, &str)] = &[
    ("al", "alabama"),
    ("ak", "alaska"),
    ("az", "arizona"),
    ("ar", "arkansas"),
    ("ca", "california"),
    ("co", "colorado"),
    ("ct", "connecticut"),
    ("de", "delaware"),
    ("fl", "florida"),
    ("ga", "georgia"),
    ("hi", "hawaii"),
    ("id", "idaho"),
    ("il", "illinois"),
    ("in", "indiana"),
    ("ia", "iowa"),
    ("ks", "kansas"),
    ("ky", "kentucky"),
    ("la", "louisiana"),
    ("me", "maine"),
    ("md", "maryland"),
    ("ma", "massachusetts"),
    ("mi", "michigan"),
    ("mn", "minnesota"),
    ("ms", "mississippi"),
    ("mo", "missouri"),
    ("mt", "montana"),
    ("ne", "nebraska"),
    ("nv", "nevada"),
    ("nh", "newhampshire"),
    ("nj", "newjersey"),
    ("nm", "newmexico"),
    ("ny", "newyork"),
    ("nc", "northcarolina"),
    ("nd", "northdakota"),
    ("oh", "ohio"),
    ("ok", "oklahoma"),
    ("or", "oregon"),
    ("pa", "pennsylvania"),
    ("ri", "rhodeisland"),
    ("sc", "southcarolina"),
    ("sd", "southdakota"),
    ("tn", "tennessee"),
    ("tx", "texas"),
    ("ut", "utah"),
    ("vt", "vermont"),
    ("va", "virginia"),
    ("wa", "washington"),
    ("wv", "westvirginia"),
    ("wi", "wisconsin"),
    ("wy", "wyoming"),
    ("dc", "districtofcolumbia"),
    ("dc", "washingtondc"),
    ("pr", "puertorico"),
    ("gu", "guam"),
    ("vi", "usvirginislands"),
    ("as", "americansamoa"),
    ("mp", "northernmarianaislands"),
];

/// Meta ST. For the US (or an unknown country) a full state name maps to its
/// 2-letter code; otherwise lowercase with no digits, spaces or punctuation.
pub fn normalize_state(raw: &str, country: Option<&str>) -> Option<String> {
    let squashed = letters_only(raw)?;
    let us_or_unknown = match country.and_then(normalize_country) {
        Some(c) => c == "us",
        None => true,
    };
    if us_or_unknown {
        if let Some((code, _)) = US_STATES.iter().find(|(_, name)| *name == squashed) {
            return Some((*code).to_string());
        }
    }
    Some(squashed)
}

/// Meta ZIP. US: the first 5 digits ("94107-1234" -> "94107"). UK (and the
/// Crown dependencies, which share its postcodes): Area/District/Sector, the
/// postcode without its last two letters ("SW1A 1AA" -> "sw1a1"), as Meta's
/// customer list formatting asks. Unknown country: the same when the value
/// looks like a US ZIP or a full UK postcode. Elsewhere lowercase with no
/// spaces or dashes.
pub fn normalize_zip(raw: &str, country: Option<&str>) -> Option<String> {
    let trimmed = raw.trim();
    let country = country.and_then(normalize_country);
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let looks_us = {
        let b = trimmed.as_bytes();
        (b.len() == 5 || (b.len() == 10 && b[5] == b'-') || b.len() == 9)
            && trimmed.chars().all(|c| c.is_ascii_digit() || c == '-')
    };
    match country.as_deref() {
        Some("us") => (digits.len() >= 5).then(|| digits[..5].to_string()),
        Some("gb" | "im" | "je" | "gg") => uk_sector(trimmed).or_else(|| squash(trimmed)),
        None if looks_us && digits.len() >= 5 => Some(digits[..5].to_string()),
        None => uk_full_postcode_sector(trimmed).or_else(|| squash(trimmed)),
        _ => squash(trimmed),
    }
}

/// A UK outward code: area (1-2 letters), district (a digit, then
/// optionally a digit or a letter): "SW1A", "M1", "EC1V", "B33".
fn is_uk_outward(s: &[u8]) -> bool {
    let letters = s.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let rest = &s[letters.min(s.len())..];
    (1..=2).contains(&letters)
        && match rest {
            [d] => d.is_ascii_digit(),
            [d, x] => d.is_ascii_digit() && x.is_ascii_alphanumeric(),
            _ => false,
        }
}

/// Lowercase with whitespace removed, ASCII letters and digits only.
fn uk_compact(raw: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = raw
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_lowercase())
        .collect();
    s.iter().all(u8::is_ascii_alphanumeric).then_some(s)
}

/// "SW1A 1AA" -> "sw1a1": outward code and the inward code's sector digit.
fn uk_full_postcode_sector(raw: &str) -> Option<String> {
    let s = uk_compact(raw)?;
    let n = s.len();
    let inward = s.get(n.checked_sub(3)?..)?;
    let full = inward[0].is_ascii_digit()
        && inward[1].is_ascii_alphabetic()
        && inward[2].is_ascii_alphabetic()
        && is_uk_outward(&s[..n - 3]);
    full.then(|| String::from_utf8_lossy(&s[..n - 2]).into_owned())
}

/// A UK postcode at sector precision: a full postcode loses its unit, a
/// value already at sector or district precision is kept as it is.
fn uk_sector(raw: &str) -> Option<String> {
    if let Some(sector) = uk_full_postcode_sector(raw) {
        return Some(sector);
    }
    let s = uk_compact(raw)?;
    let n = s.len();
    let sector = n >= 3 && s[n - 1].is_ascii_digit() && is_uk_outward(&s[..n - 1]);
    (sector || is_uk_outward(&s)).then(|| String::from_utf8_lossy(&s).into_owned())
}

/// Common English names and alpha-3 codes for major countries: (alpha-2, aliases).
const COUNTRY_ALIASES: &[(&str, &[&str])] = &[
    (
        "us",
        &["usa", "unitedstates", "unitedstatesofamerica", "america"],
    ),
    (
        "gb",
        &[
            "gbr",
            "uk",
            "unitedkingdom",
            "greatbritain",
            "britain",
            "england",
            "scotland",
            "wales",
            "northernireland",
        ],
    ),
    ("ca", &["can", "canada"]),
    ("au", &["aus", "australia"]),
    ("nz", &["nzl", "newzealand"]),
    ("ie", &["irl", "ireland"]),
    ("de", &["deu", "germany", "deutschland"]),
    ("fr", &["fra", "france"]),
    ("es", &["esp", "spain", "espana", "españa"]),
    ("it", &["ita", "italy", "italia"]),
    ("pt", &["prt", "portugal"]),
    ("nl", &["nld", "netherlands", "holland", "thenetherlands"]),
    ("be", &["bel", "belgium"]),
    ("ch", &["che", "switzerland"]),
    ("at", &["aut", "austria"]),
    ("se", &["swe", "sweden"]),
    ("no", &["nor", "norway"]),
    ("dk", &["dnk", "denmark"]),
    ("fi", &["fin", "finland"]),
    ("pl", &["pol", "poland"]),
    ("cz", &["cze", "czechia", "czechrepublic"]),
    ("gr", &["grc", "greece"]),
    ("ro", &["rou", "romania"]),
    ("hu", &["hun", "hungary"]),
    ("ua", &["ukr", "ukraine"]),
    ("ru", &["rus", "russia", "russianfederation"]),
    ("tr", &["tur", "turkey", "turkiye", "türkiye"]),
    ("il", &["isr", "israel"]),
    ("ae", &["are", "uae", "unitedarabemirates"]),
    ("sa", &["sau", "saudiarabia"]),
    ("eg", &["egy", "egypt"]),
    ("za", &["zaf", "southafrica"]),
    ("ng", &["nga", "nigeria"]),
    ("ke", &["ken", "kenya"]),
    ("ma", &["mar", "morocco"]),
    ("in", &["ind", "india"]),
    ("pk", &["pak", "pakistan"]),
    ("bd", &["bgd", "bangladesh"]),
    ("cn", &["chn", "china", "peoplesrepublicofchina"]),
    ("hk", &["hkg", "hongkong"]),
    ("tw", &["twn", "taiwan"]),
    ("jp", &["jpn", "japan"]),
    ("kr", &["kor", "southkorea", "korea", "republicofkorea"]),
    ("sg", &["sgp", "singapore"]),
    ("my", &["mys", "malaysia"]),
    ("id", &["idn", "indonesia"]),
    ("th", &["tha", "thailand"]),
    ("vn", &["vnm", "vietnam"]),
    ("ph", &["phl", "philippines"]),
    ("mx", &["mex", "mexico", "méxico"]),
    ("br", &["bra", "brazil", "brasil"]),
    ("ar", &["arg", "argentina"]),
    ("cl", &["chl", "chile"]),
    ("co", &["col", "colombia"]),
    ("pe", &["per", "peru"]),
];

/// Meta COUNTRY / Google country code: ISO 3166-1 alpha-2, lowercase.
/// Accepts any alpha-2 region the phone metadata knows, plus the common
/// English names and alpha-3 codes of major countries ("UK" -> "gb").
pub fn normalize_country(raw: &str) -> Option<String> {
    let squashed = squash(raw)?;
    if let Some((code, _)) = COUNTRY_ALIASES
        .iter()
        .find(|(_, aliases)| aliases.contains(&squashed.as_str()))
    {
        return Some((*code).to_string());
    }
    if squashed.len() == 2
        && squashed.bytes().all(|b| b.is_ascii_lowercase())
        && phonenumber::country::Id::from_str(&squashed.to_ascii_uppercase()).is_ok()
    {
        return Some(squashed);
    }
    None
}
