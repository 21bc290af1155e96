//! SIP status codes <-> Q.850 causes (RFC 3398 sections 7.2.4.1 and 8.2.6.1).

use codecs::meta::Cause;

/// The Q.850 cause for a SIP final failure response (RFC 3398 section 8.2.6.1).
pub fn status_to_cause(status: u16) -> Cause {
    match status {
        400 => Cause::TEMPORARY_FAILURE,
        401 | 402 | 403 | 407 | 603 => Cause::CALL_REJECTED,
        404 | 485 | 604 => Cause::UNALLOCATED_NUMBER,
        405 | 501 => Cause::SERVICE_NOT_IMPLEMENTED,
        406 | 415 | 488 | 606 => Cause::BEARER_CAPABILITY_NOT_IMPLEMENTED,
        408 | 504 => Cause::RECOVERY_ON_TIMER_EXPIRY,
        410 => Cause::NUMBER_CHANGED,
        480 => Cause::NO_USER_RESPONDING,
        481 | 500 | 503 => Cause::TEMPORARY_FAILURE,
        482 | 483 => Cause(25), // exchange routing error
        484 => Cause::INVALID_NUMBER_FORMAT,
        486 | 600 => Cause::USER_BUSY,
        487 => Cause::NORMAL_UNSPECIFIED,
        502 => Cause::DESTINATION_OUT_OF_ORDER,
        _ => Cause::INTERWORKING,
    }
}

/// The SIP status for a Q.850 cause when a call is refused (RFC 3398 section 7.2.4.1).
pub fn cause_to_status(cause: Cause) -> u16 {
    match cause.0 {
        1..=3 | 26 => 404,
        16 | 31 => 480,
        17 => 486,
        18 => 408,
        19 | 20 => 480,
        21 | 55 | 57 | 87 => 403,
        22 | 23 => 410,
        27 => 502,
        28 => 484,
        29 | 69 | 79 => 501,
        // 8: preemption (an emergency call took the slot).
        8 | 34 | 38 | 41 | 42 | 47 | 58 | 88 => 503,
        65 | 70 => 488,
        102 => 504,
        111 | 127 => 500,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_failures_round_trip() {
        for status in [404, 486, 403, 503, 484, 410, 502, 488] {
            assert_eq!(cause_to_status(status_to_cause(status)), status, "{status}");
        }
    }
}
