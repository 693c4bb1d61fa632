package jwt

// status is the outcome of verifying one token (or a group of tokens), with
// the values and strings of Envoy's jwt_verify_lib (source/common/jwt/
// status.cc), so that rejections read exactly like a sidecar's.
type status uint8

const (
	statusOK status = iota
	statusJwtMissed
	statusJwtNotYetValid
	statusJwtExpired
	statusJwtBadFormat
	statusJwtHeaderParseErrorBadBase64
	statusJwtHeaderParseErrorBadJSON
	statusJwtHeaderBadAlg
	statusJwtHeaderNotImplementedAlg
	statusJwtHeaderBadKid
	statusJwtPayloadParseErrorBadBase64
	statusJwtPayloadParseErrorBadJSON
	statusJwtPayloadParseErrorIssNotString
	statusJwtPayloadParseErrorSubNotString
	statusJwtPayloadParseErrorIatNotInteger
	statusJwtPayloadParseErrorIatOutOfRange
	statusJwtPayloadParseErrorNbfNotInteger
	statusJwtPayloadParseErrorNbfOutOfRange
	statusJwtPayloadParseErrorExpNotInteger
	statusJwtPayloadParseErrorExpOutOfRange
	statusJwtPayloadParseErrorJtiNotString
	statusJwtPayloadParseErrorAudNotString
	statusJwtSignatureParseErrorBadBase64
	statusJwtUnknownIssuer
	statusJwtAudienceNotAllowed
	statusJwtVerificationFail
	statusJwksParseError
	statusJwksNoKeys
	statusJwksBadKeys
	statusJwksNoValidKeys
	statusJwksKidAlgMismatch
	statusJwksFetchFail
	// statusJwtTooLarge has no Envoy equivalent: Garrison refuses to parse
	// tokens above Config.MaxTokenSize (Envoy is bounded only by its header
	// size limit).
	statusJwtTooLarge
	// statusOriginFailed is Istio's authn filter's rejection of a request
	// whose triggered legacy origins were not satisfied.
	statusOriginFailed
)

var statusStrings = [...]string{
	statusOK:                                "OK",
	statusJwtMissed:                         "Jwt is missing",
	statusJwtNotYetValid:                    "Jwt not yet valid",
	statusJwtExpired:                        "Jwt is expired",
	statusJwtBadFormat:                      "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
	statusJwtHeaderParseErrorBadBase64:      "Jwt header is an invalid Base64url encoded",
	statusJwtHeaderParseErrorBadJSON:        "Jwt header is an invalid JSON",
	statusJwtHeaderBadAlg:                   "Jwt header [alg] field is required and must be a string",
	statusJwtHeaderNotImplementedAlg:        "Jwt header [alg] is not supported",
	statusJwtHeaderBadKid:                   "Jwt header [kid] field is not a string",
	statusJwtPayloadParseErrorBadBase64:     "Jwt payload is an invalid Base64url encoded",
	statusJwtPayloadParseErrorBadJSON:       "Jwt payload is an invalid JSON",
	statusJwtPayloadParseErrorIssNotString:  "Jwt payload [iss] field is not a string",
	statusJwtPayloadParseErrorSubNotString:  "Jwt payload [sub] field is not a string",
	statusJwtPayloadParseErrorIatNotInteger: "Jwt payload [iat] field is not an integer",
	statusJwtPayloadParseErrorIatOutOfRange: "Jwt payload [iat] field is not a positive 64 bit integer",
	statusJwtPayloadParseErrorNbfNotInteger: "Jwt payload [nbf] field is not an integer",
	statusJwtPayloadParseErrorNbfOutOfRange: "Jwt payload [nbf] field is not a positive 64 bit integer",
	statusJwtPayloadParseErrorExpNotInteger: "Jwt payload [exp] field is not an integer",
	statusJwtPayloadParseErrorExpOutOfRange: "Jwt payload [exp] field is not a positive 64 bit integer",
	statusJwtPayloadParseErrorJtiNotString:  "Jwt payload [jti] field is not a string",
	statusJwtPayloadParseErrorAudNotString:  "Jwt payload [aud] field is not a string or string list",
	statusJwtSignatureParseErrorBadBase64:   "Jwt signature is an invalid Base64url encoded",
	statusJwtUnknownIssuer:                  "Jwt issuer is not configured",
	statusJwtAudienceNotAllowed:             "Audiences in Jwt are not allowed",
	statusJwtVerificationFail:               "Jwt verification fails",
	statusJwksParseError:                    "Jwks is an invalid JSON",
	statusJwksNoKeys:                        "Jwks does not have [keys] field",
	statusJwksBadKeys:                       "[keys] in Jwks is not an array",
	statusJwksNoValidKeys:                   "Jwks doesn't have any valid public key",
	statusJwksKidAlgMismatch:                "Jwks doesn't have key to match kid or alg from Jwt",
	statusJwksFetchFail:                     "Jwks remote fetch is failed",
	statusJwtTooLarge:                       "Jwt is larger than the maximum token size",
	statusOriginFailed:                      "Origin authentication failed.",
}

func (s status) String() string {
	if int(s) < len(statusStrings) {
		return statusStrings[s]
	}
	return "unknown"
}
