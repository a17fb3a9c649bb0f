//! What a refusal most likely means for the person at the keyboard. The gateway and `verify` name
//! the rule that failed (`InvalidSubject`, `InvalidClaim`, `UnavailableProof`); the likely fix depends on what the
//! command line sent, which only the CLI knows: no `--proof` at all, or a chain rooted at a subject
//! the gateway does not serve.

/// What was sent, for choosing a hint.
pub struct Sent<'a> {
    /// How many delegations the invocation names in `prf`.
    pub proofs: usize,
    /// The invocation's subject.
    pub subject: &'a str,
    /// The invoker.
    pub invoker: &'a str,
    /// The subjects the gateway announces at `GET /` (`self` resolved to its DID); `None` offline.
    pub served: Option<&'a [String]>,
}

/// A hint for a refusal named `name`, if there is a likely cause.
pub fn for_refusal(name: &str, sent: &Sent<'_>) -> Option<String> {
    match name {
        "InvalidSubject" if sent.proofs == 0 && sent.subject == sent.invoker => Some(format!(
            "the invocation carries no delegation, so it acts only for its own invoker {}; \
             pass the delegations that give it authority with --proof FILE (one flag per file)",
            sent.invoker
        )),
        // Without proofs, nothing establishes another subject's authority: `InvalidClaim`.
        "InvalidClaim" | "InvalidSubject" if sent.proofs == 0 => Some(format!(
            "the invocation names the subject {} but carries no delegation from it; \
             pass the chain with --proof FILE (one flag per file)",
            sent.subject
        )),
        "InvalidSubject" => match sent.served {
            Some(served) if !served.iter().any(|s| s == sent.subject) => Some(format!(
                "this gateway acts only for {}; the chain's root is {}. To serve it, the operator \
                 adds that DID to `subjects` in the policy file (serve --policy FILE)",
                served.join(", "),
                sent.subject
            )),
            _ => None,
        },
        "UnavailableProof" => Some(
            "a delegation the invocation names was not sent: pass every delegation of the chain \
             with --proof"
                .to_owned(),
        ),
        _ => None,
    }
}

/// Prints the hint for `name`, if any, on standard error (standard output stays one JSON line).
pub fn print(name: Option<&str>, sent: &Sent<'_>) {
    if let Some(hint) = name.and_then(|n| for_refusal(n, sent)) {
        eprintln!("hint: {hint}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_proof_and_an_unserved_root_get_different_hints() {
        let alone = Sent {
            proofs: 0,
            subject: "did:key:zA",
            invoker: "did:key:zA",
            served: None,
        };
        assert!(
            for_refusal("InvalidSubject", &alone)
                .unwrap()
                .contains("--proof")
        );
        let served = ["did:key:zGateway".to_owned()];
        let rooted = Sent {
            proofs: 2,
            subject: "did:key:zRoot",
            invoker: "did:key:zA",
            served: Some(&served),
        };
        let hint = for_refusal("InvalidSubject", &rooted).unwrap();
        assert!(
            hint.contains("subjects") && hint.contains("did:key:zRoot"),
            "{hint}"
        );
        assert_eq!(for_refusal("MatchError", &rooted), None);
    }
}
