"""The Gateway API features twistgw implements, as its GatewayClasses report them.

The conformance harness runs exactly the tests whose features are listed here, so
this list must never name a feature before it is built and tested.
"""

SUPPORTED_FEATURES: frozenset[str] = frozenset(
    {
        "BackendTLSPolicy",
        "BackendTLSPolicySANValidation",
        "Gateway",
        "GatewayBackendClientCertificate",
        "GatewayFrontendClientCertificateValidation",
        "GatewayFrontendClientCertificateValidationInsecureFallback",
        "GatewayHTTPListenerIsolation",
        "GatewayHTTPSListenerDetectMisdirectedRequests",
        "GatewayPort8080",
        "GatewayStaticAddresses",
        "GRPCRoute",
        "GRPCRouteNamedRouteRule",
        "GRPCRouteRequestHeaderModifier",
        "HTTPRoute",
        "HTTPRoute303RedirectStatusCode",
        "HTTPRoute307RedirectStatusCode",
        "HTTPRoute308RedirectStatusCode",
        "HTTPRouteBackendProtocolH2C",
        "HTTPRouteBackendProtocolWebSocket",
        "HTTPRouteBackendRequestHeaderModification",
        "HTTPRouteBackendTimeout",
        "HTTPRouteCORS",
        "HTTPRouteHostRewrite",
        "HTTPRouteMethodMatching",
        "HTTPRouteParentRefPort",
        "HTTPRoutePathRedirect",
        "HTTPRoutePathRewrite",
        "HTTPRoutePortRedirect",
        "HTTPRouteQueryParamMatching",
        "HTTPRouteRequestTimeout",
        "HTTPRouteResponseHeaderModification",
        "HTTPRouteRetry",
        "HTTPRouteRetryBackendTimeout",
        "HTTPRouteRetryConnectionError",
        "HTTPRouteSchemeRedirect",
        "ListenerSet",
        "ReferenceGrant",
        "TCPRoute",
        "TLSRoute",
        "TLSRouteModeMixed",
        "TLSRouteModeTerminate",
        "UDPRoute",
    }
)
