//! Turning text into index terms: lower-casing, accent folding, splitting, a minimum word length
//! and an optional English suffix stemmer. Records and queries go through the same tokenizer.

/// Longest term kept, in characters: longer words are cut to this length (in the index and in
/// queries alike, so they still match).
pub const MAX_TERM_CHARS: usize = 64;

/// Splits text into terms.
///
/// 1. Every character is lower-cased (Unicode) and Latin letters with diacritics are folded to
///    their base letters (`é` → `e`, `ß` → `ss`, `æ` → `ae`, `ł` → `l`, …) by a small table.
/// 2. Words are the runs of alphanumeric characters (anything else separates: spaces,
///    punctuation, apostrophes, `-`, `_`).
/// 3. Words shorter than the minimum length (in characters) are dropped; longer than
///    [`MAX_TERM_CHARS`] are cut.
/// 4. With stemming, a few English suffixes are removed (see [`stem`]).
///
/// ```
/// use s3db_fulltext::Tokenizer;
/// let t = Tokenizer::new(3, false);
/// assert_eq!(t.tokens("Crème Brûlée, an ÉTÉ treat!"), ["creme", "brulee", "ete", "treat"]);
/// let stemmed = Tokenizer::new(3, true);
/// assert_eq!(stemmed.tokens("running ponies jumped"), ["run", "pony", "jump"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokenizer {
    min_length: usize,
    stemming: bool,
}

impl Tokenizer {
    /// A tokenizer dropping words shorter than `min_length` characters, stemming or not.
    #[must_use]
    pub fn new(min_length: usize, stemming: bool) -> Self {
        Self {
            min_length: min_length.max(1),
            stemming,
        }
    }

    /// The minimum word length.
    #[must_use]
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// Whether words are stemmed.
    #[must_use]
    pub fn stemming(&self) -> bool {
        self.stemming
    }

    /// The terms of `text`, in order, repeats included.
    #[must_use]
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        let mut folded = String::new();
        for c in text.chars() {
            folded.clear();
            for lower in c.to_lowercase() {
                fold(lower, &mut folded);
            }
            for f in folded.chars() {
                if f.is_alphanumeric() {
                    word.push(f);
                } else {
                    self.flush(&mut word, &mut out);
                }
            }
        }
        self.flush(&mut word, &mut out);
        out
    }

    fn flush(&self, word: &mut String, out: &mut Vec<String>) {
        if word.is_empty() {
            return;
        }
        let chars = word.chars().count();
        if chars >= self.min_length {
            let mut term: String = if chars > MAX_TERM_CHARS {
                word.chars().take(MAX_TERM_CHARS).collect()
            } else {
                word.clone()
            };
            if self.stemming {
                term = stem(&term);
            }
            out.push(term);
        }
        word.clear();
    }
}

/// Folds one lower-case character: Latin letters with diacritics to their base letter(s),
/// everything else unchanged.
fn fold(c: char, out: &mut String) {
    let folded = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' | 'ǎ' | 'ª' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' | 'ǐ' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' | 'ǒ' | 'º' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' | 'ǔ' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        other => {
            out.push(other);
            return;
        }
    };
    out.push_str(folded);
}

/// A deliberately small English suffix stemmer (not Porter): on words of ASCII letters only,
/// removes at most one suffix, keeping a stem of at least 3 letters that contains a vowel:
///
/// | suffix | becomes | example |
/// |---|---|---|
/// | `sses` | `ss` | classes → class |
/// | `ies` | `y` | ponies → pony |
/// | `s` (not after `s`, `u`, `i`) | — | cats → cat |
/// | `ing` | — (a doubled final consonant is undoubled) | running → run, walking → walk |
/// | `ed` | — (idem) | jumped → jump, stopped → stop |
/// | `ly` | — | quickly → quick |
///
/// Words of other scripts, or with digits, are left alone.
#[must_use]
pub fn stem(word: &str) -> String {
    if !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return word.to_owned();
    }
    let has_vowel = |s: &str| s.bytes().any(|b| b"aeiouy".contains(&b));
    let keep = |s: &str| s.len() >= 3 && has_vowel(s);
    if let Some(stem) = word.strip_suffix("sses") {
        return format!("{stem}ss");
    }
    if let Some(stem) = word.strip_suffix("ies")
        && stem.len() >= 2
    {
        return format!("{stem}y");
    }
    for suffix in ["ing", "ed"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && keep(stem)
        {
            return undouble(stem);
        }
    }
    if let Some(stem) = word.strip_suffix("ly")
        && keep(stem)
    {
        return stem.to_owned();
    }
    if let Some(stem) = word.strip_suffix('s')
        && !stem.ends_with(['s', 'u', 'i'])
        && keep(stem)
    {
        return stem.to_owned();
    }
    word.to_owned()
}

/// `runn` → `run`, `stopp` → `stop`; `fall`, `kiss`, `buzz` stay.
fn undouble(stem: &str) -> String {
    let b = stem.as_bytes();
    if let [.., x, y] = b
        && x == y
        && !b"aeiouylsz".contains(y)
    {
        return stem[..stem.len() - 1].to_owned();
    }
    stem.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_cases_folds_and_splits() {
        let t = Tokenizer::new(3, false);
        assert_eq!(
            t.tokens("Hello, WORLD! Ça va? Straße Øre naïve façade l'été"),
            ["hello", "world", "strasse", "ore", "naive", "facade", "ete"]
        );
    }

    #[test]
    fn min_length_counts_characters() {
        let t = Tokenizer::new(3, false);
        assert_eq!(t.tokens("a an the été go"), ["the", "ete"]);
        let one = Tokenizer::new(1, false);
        assert_eq!(one.tokens("a b-c"), ["a", "b", "c"]);
    }

    #[test]
    fn digits_and_other_scripts_are_words() {
        let t = Tokenizer::new(3, false);
        assert_eq!(
            t.tokens("rust2024 東京都 ΑΘΗΝΑ"),
            ["rust2024", "東京都", "αθηνα"]
        );
    }

    #[test]
    fn long_words_are_cut() {
        let t = Tokenizer::new(3, false);
        let long = "x".repeat(100);
        assert_eq!(t.tokens(&long), ["x".repeat(MAX_TERM_CHARS)]);
    }

    #[test]
    fn stemmer_rules() {
        for (word, stemmed) in [
            ("classes", "class"),
            ("ponies", "pony"),
            ("cats", "cat"),
            ("running", "run"),
            ("walking", "walk"),
            ("jumped", "jump"),
            ("stopped", "stop"),
            ("falling", "fall"),
            ("quickly", "quick"),
            ("bus", "bus"),
            ("this", "this"),
            ("glass", "glass"),
            ("sing", "sing"),
            ("red", "red"),
            ("café", "café"),
        ] {
            assert_eq!(stem(word), stemmed, "{word}");
        }
    }
}
