//! Condition types and reasons of the three resources' status, as enums.
//! They serialise to the same strings as before (`as_str`), so the CRDs and
//! the status shape do not change; control flow matches on variants, never
//! on strings.

/// Defines a fieldless enum whose variants are written as the strings they
/// stand for, with `as_str` and the list of every variant.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The string written to the status.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant written as `s`.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// The `type` of a status condition.
    ConditionType {
        /// kstatus: the resource is done and healthy.
        Ready = "Ready",
        /// kstatus: the resource cannot progress without a change.
        Stalled = "Stalled",
        /// kstatus: work is in progress.
        Reconciling = "Reconciling",
        /// MediaStack: the monitoring objects are applied (or disabled).
        MonitoringReady = "MonitoringReady",
        /// MediaStack: Traefik, cloudflared and fail2ban are ready.
        EdgeReady = "EdgeReady",
        /// MediaStack, IngressRoute: something is served without a login.
        Insecure = "Insecure",
        /// MediaStack: a service alias's name is taken by another Service.
        ServiceAliasConflict = "ServiceAliasConflict",
        /// VpnGateway: whether a port is forwarded.
        PortForwarding = "PortForwarding",
        /// VpnGateway: gluetun is healthy in every consumer pod.
        TunnelReady = "TunnelReady",
        /// MediaStack: the wiring task's links (written by the task under
        /// its own field manager, never by the reconcile).
        Wired = "Wired",
    }
}

string_enum! {
    /// The `reason` of a status condition (also the reason of the Warning
    /// event that reports it).
    Reason {
        // kstatus and progress
        /// Everything is applied and ready.
        Ready = "Ready",
        /// Waiting for applied objects to become ready.
        Progressing = "Progressing",
        /// An app waits for its VpnGateway.
        VpnUnavailable = "VpnUnavailable",
        // MediaStack stalls before anything is applied
        /// A referenced PersistentVolumeClaim does not exist.
        ClaimNotFound = "ClaimNotFound",
        /// A referenced Secret (or its key) does not exist.
        SecretNotFound = "SecretNotFound",
        /// The admin policy refuses the spec.
        NotAllowed = "NotAllowed",
        /// The spec cannot be rendered.
        InvalidSpec = "InvalidSpec",
        /// A claim the stack would write belongs to someone else.
        ClaimConflict = "ClaimConflict",
        // Apply
        /// The API server rejected a child (names the object and the server's message).
        ApplyFailed = "ApplyFailed",
        /// Children the spec no longer asks for could not be deleted.
        PruneFailed = "PruneFailed",
        // MonitoringReady
        /// `spec.monitoring.enabled` is false.
        Disabled = "Disabled",
        /// The monitoring objects are applied.
        Applied = "Applied",
        /// The prometheus-operator CRDs are not installed.
        CrdNotInstalled = "CRDNotInstalled",
        // EdgeReady
        /// The stack is stalled before the edge is rendered.
        NotRendered = "NotRendered",
        /// The stack's Traefik has pods that are not ready.
        TraefikNotReady = "TraefikNotReady",
        /// cloudflared has pods that are not ready.
        CloudflaredNotReady = "CloudflaredNotReady",
        /// fail2ban has pods that are not ready.
        Fail2banNotReady = "Fail2banNotReady",
        /// Routes are served by a Traefik the stack does not manage.
        ExistingTraefik = "ExistingTraefik",
        // Insecure
        /// Every public route has a login.
        Secure = "Secure",
        /// A public app or route has no auth.
        PublicWithoutAuth = "PublicWithoutAuth",
        /// Dozzle is exposed with `allowAnonymous`.
        DozzleWithoutAuth = "DozzleWithoutAuth",
        /// A public route on a stack without `domain.public`.
        NoPublicDomain = "NoPublicDomain",
        /// A public route whose stack's tunnel does not run.
        TunnelNotConfigured = "TunnelNotConfigured",
        /// `allowCIDRs` behind an unmanaged Traefik sees the tunnel pod's address.
        AllowListSeesTunnel = "AllowListSeesTunnel",
        // ServiceAliasConflict
        /// Every alias is served.
        NoConflict = "NoConflict",
        /// An alias's name is taken by a Service that is not ours.
        ServiceExists = "ServiceExists",
        // IngressRoute
        /// The route's MediaStack does not exist (or is ambiguous).
        StackNotFound = "StackNotFound",
        /// The traefik.io CRDs are not installed.
        TraefikCrdNotInstalled = "TraefikCRDNotInstalled",
        /// Another route already serves the host.
        HostConflict = "HostConflict",
        /// The route's backend Service does not exist yet.
        ServiceNotFound = "ServiceNotFound",
        /// The route's basic-auth Secret is missing or unusable.
        AuthSecretNotFound = "AuthSecretNotFound",
        // VpnGateway (the validation reasons of `render::vpn::reason`)
        /// A key the gateway needs is missing from its Secret.
        SecretKeyMissing = "SecretKeyMissing",
        /// A key of the gateway's Secret has an unusable value.
        SecretKeyInvalid = "SecretKeyInvalid",
        /// A subnet overlaps the tunnel address.
        SubnetOverlapsTunnel = "SubnetOverlapsTunnel",
        /// A subnet is not a CIDR.
        InvalidSubnet = "InvalidSubnet",
        /// A subnet is not in a private range.
        SubnetNotPrivate = "SubnetNotPrivate",
        /// A `custom` gateway has no usable endpoint.
        EndpointInvalid = "EndpointInvalid",
        /// No cluster pod/service range is known.
        ClusterSubnetsUnknown = "ClusterSubnetsUnknown",
        /// The referenced VpnGateway does not exist.
        VpnGatewayNotFound = "VpnGatewayNotFound",
        /// The referenced VpnGateway is being deleted.
        VpnGatewayDeleting = "VpnGatewayDeleting",
        // PortForwarding
        /// Port forwarding is on and the provider supports it.
        Enabled = "Enabled",
        /// The provider cannot forward a port.
        Unsupported = "Unsupported",
        // TunnelReady
        /// No consumer pod runs.
        NoConsumerPods = "NoConsumerPods",
        /// gluetun is healthy in every consumer pod.
        Connected = "Connected",
        /// gluetun's health check fails in a consumer pod.
        NotConnected = "NotConnected",
    }
}

/// The `status.portForwarding` of a VpnGateway (and its condition's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortForwardingState {
    /// `portForwarding.enabled` is false.
    Disabled,
    /// Enabled, and the provider forwards a port.
    Enabled,
    /// Enabled, but the provider cannot forward a port.
    Unsupported,
}

impl PortForwardingState {
    /// The state a gateway spec asks for.
    pub fn of(spec: &super::VpnGatewaySpec) -> Self {
        if !spec.port_forwarding.enabled {
            Self::Disabled
        } else if spec.provider.supports_port_forwarding() {
            Self::Enabled
        } else {
            Self::Unsupported
        }
    }

    /// Whether a port is forwarded.
    pub fn active(self) -> bool {
        self == Self::Enabled
    }

    /// The status value (`Disabled`, `Enabled`, `Unsupported`).
    pub fn as_str(self) -> &'static str {
        self.reason().as_str()
    }

    /// The `PortForwarding` condition's reason.
    pub fn reason(self) -> Reason {
        match self {
            Self::Disabled => Reason::Disabled,
            Self::Enabled => Reason::Enabled,
            Self::Unsupported => Reason::Unsupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_unique_and_parse_back() {
        for v in Reason::ALL {
            assert_eq!(Reason::parse(v.as_str()), Some(*v));
        }
        for v in ConditionType::ALL {
            assert_eq!(ConditionType::parse(v.as_str()), Some(*v));
        }
        let mut seen = std::collections::BTreeSet::new();
        assert!(Reason::ALL.iter().all(|r| seen.insert(r.as_str())));
    }

    #[test]
    fn status_strings_are_the_ones_users_and_tools_read() {
        assert_eq!(ConditionType::Ready.as_str(), "Ready");
        assert_eq!(Reason::CrdNotInstalled.as_str(), "CRDNotInstalled");
        assert_eq!(
            Reason::TraefikCrdNotInstalled.as_str(),
            "TraefikCRDNotInstalled"
        );
        assert_eq!(Reason::ApplyFailed.as_str(), "ApplyFailed");
    }

    #[test]
    fn every_vpn_validation_reason_is_a_variant() {
        use crate::render::vpn::reason;
        for r in [
            reason::SECRET_NOT_FOUND,
            reason::SECRET_KEY_MISSING,
            reason::SECRET_KEY_INVALID,
            reason::SUBNET_OVERLAPS_TUNNEL,
            reason::INVALID_SUBNET,
            reason::SUBNET_NOT_PRIVATE,
            reason::ENDPOINT_INVALID,
            reason::CLUSTER_SUBNETS_UNKNOWN,
            reason::GATEWAY_NOT_FOUND,
            reason::GATEWAY_DELETING,
        ] {
            assert!(Reason::parse(r).is_some(), "{r} has no Reason variant");
        }
    }
}
