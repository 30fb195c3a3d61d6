"""The Volumes section of kubectl's DescribePodTemplate: one printer per volume source."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.domain.describe_format import MAX_ANNOTATION_LEN, go_value, quantity, shorten
from bot.domain.readers import (
    Json,
    as_int,
    as_map,
    as_str,
    maps,
    opt_int,
    seq,
)


def volume_lines(volumes: list[Mapping[str, Any]]) -> list[str]:
    if not volumes:
        return ["  Volumes:\t<none>"]
    lines = ["  Volumes:"]
    for v in volumes:
        lines.append(f"   {as_str(v.get('name'))}:")
        if isinstance(v.get("emptyDir"), Mapping):
            empty = as_map(v["emptyDir"])
            lines += [
                "    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)",
                f"    Medium:\t{as_str(empty.get('medium'))}",
                f"    SizeLimit:\t{_size_limit(empty.get('sizeLimit'))}",
            ]
        elif isinstance(v.get("configMap"), Mapping):
            cm = as_map(v["configMap"])
            lines += [
                "    Type:\tConfigMap (a volume populated by a ConfigMap)",
                f"    Name:\t{as_str(cm.get('name'))}",
                f"    Optional:\t{'true' if cm.get('optional') is True else 'false'}",
            ]
        elif isinstance(v.get("secret"), Mapping):
            secret = as_map(v["secret"])
            lines += [
                "    Type:\tSecret (a volume populated by a Secret)",
                f"    SecretName:\t{as_str(secret.get('secretName'))}",
                f"    Optional:\t{'true' if secret.get('optional') is True else 'false'}",
            ]
        elif isinstance(v.get("persistentVolumeClaim"), Mapping):
            claim = as_map(v["persistentVolumeClaim"])
            lines += [
                "    Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the "
                "same namespace)",
                f"    ClaimName:\t{as_str(claim.get('claimName'))}",
                f"    ReadOnly:\t{'true' if claim.get('readOnly') is True else 'false'}",
            ]
        elif isinstance(v.get("hostPath"), Mapping):
            host = as_map(v["hostPath"])
            lines += [
                "    Type:\tHostPath (bare host directory volume)",
                f"    Path:\t{as_str(host.get('path'))}",
                f"    HostPathType:\t{as_str(host.get('type')) or '<none>'}",
            ]
        elif isinstance(v.get("projected"), Mapping):
            lines += _projected_lines(as_map(v["projected"]))
        elif isinstance(v.get("downwardAPI"), Mapping):
            lines.append("    Type:\tDownwardAPI (a volume populated by information about the pod)")
            lines.append("    Items:")
            for item in maps(as_map(v["downwardAPI"]).get("items")):
                path = as_str(item.get("path"))
                if isinstance(item.get("fieldRef"), Mapping):
                    lines.append(
                        f"      {as_str(as_map(item['fieldRef']).get('fieldPath'))} -> {path}"
                    )
                if isinstance(item.get("resourceFieldRef"), Mapping):
                    resource = as_str(as_map(item["resourceFieldRef"]).get("resource"))
                    lines.append(f"      {resource} -> {path}")
        elif isinstance(v.get("csi"), Mapping):
            csi = as_map(v["csi"])
            lines += [
                "    Type:\tCSI (a Container Storage Interface (CSI) volume source)",
                f"    Driver:\t{as_str(csi.get('driver'))}",
                f"    FSType:\t{as_str(csi.get('fsType'))}",
                f"    ReadOnly:\t{'true' if csi.get('readOnly') is True else 'false'}",
            ]
            attributes = {str(k): as_str(x) for k, x in as_map(csi.get("volumeAttributes")).items()}
            if not attributes:
                lines.append("    VolumeAttributes:\t<none>")
            for i, key in enumerate(sorted(attributes)):
                text = shorten(f"{key}={attributes[key]}", MAX_ANNOTATION_LEN)
                lead = "    VolumeAttributes:\t" if i == 0 else "        \t"
                lines.append(f"{lead}    {text}")
        elif isinstance(v.get("ephemeral"), Mapping):
            lines += _ephemeral_lines(as_map(v["ephemeral"]))
        elif isinstance(v.get("nfs"), Mapping):
            nfs = as_map(v["nfs"])
            lines += [
                "    Type:\tNFS (an NFS mount that lasts the lifetime of a pod)",
                f"    Server:\t{as_str(nfs.get('server'))}",
                f"    Path:\t{as_str(nfs.get('path'))}",
                f"    ReadOnly:\t{'true' if nfs.get('readOnly') is True else 'false'}",
            ]
        else:
            lines += _other_volume_lines(v)
    return lines


def _size_limit(value: Any) -> str:
    """An emptyDir's sizeLimit: only a positive quantity counts, else ``<unset>``."""
    amount = quantity(value) if value is not None else None
    return str(value) if amount is not None and amount > 0 else "<unset>"


_VOLUME_PRINTERS: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "gcePersistentDisk": (
        "GCEPersistentDisk (a Persistent Disk resource in Google Compute Engine)",
        (
            ("PDName", "pdName", "s"),
            ("FSType", "fsType", "s"),
            ("Partition", "partition", "i"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "awsElasticBlockStore": (
        "AWSElasticBlockStore (a Persistent Disk resource in AWS)",
        (
            ("VolumeID", "volumeID", "s"),
            ("FSType", "fsType", "s"),
            ("Partition", "partition", "i"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "gitRepo": (
        "GitRepo (a volume that is pulled from git when the pod is created)",
        (("Repository", "repository", "s"), ("Revision", "revision", "s")),
    ),
    "glusterfs": (
        "Glusterfs (a Glusterfs mount on the host that shares a pod's lifetime)",
        (("EndpointsName", "endpoints", "s"), ("Path", "path", "s"), ("ReadOnly", "readOnly", "b")),
    ),
    "rbd": (
        "RBD (a Rados Block Device mount on the host that shares a pod's lifetime)",
        (
            ("CephMonitors", "monitors", "l"),
            ("RBDImage", "image", "s"),
            ("FSType", "fsType", "s"),
            ("RBDPool", "pool", "s"),
            ("RadosUser", "user", "s"),
            ("Keyring", "keyring", "s"),
            ("SecretRef", "secretRef", "r"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "quobyte": (
        "Quobyte (a Quobyte mount on the host that shares a pod's lifetime)",
        (("Registry", "registry", "s"), ("Volume", "volume", "s"), ("ReadOnly", "readOnly", "b")),
    ),
    "vsphereVolume": (
        "vSphereVolume (a Persistent Disk resource in vSphere)",
        (
            ("VolumePath", "volumePath", "s"),
            ("FSType", "fsType", "s"),
            ("StoragePolicyName", "storagePolicyName", "s"),
        ),
    ),
    "cinder": (
        "Cinder (a Persistent Disk resource in OpenStack)",
        (
            ("VolumeID", "volumeID", "s"),
            ("FSType", "fsType", "s"),
            ("ReadOnly", "readOnly", "b"),
            ("SecretRef", "secretRef", "r"),
        ),
    ),
    "photonPersistentDisk": (
        "PhotonPersistentDisk (a Persistent Disk resource in photon platform)",
        (("PdID", "pdID", "s"), ("FSType", "fsType", "s")),
    ),
    "portworxVolume": (
        "PortworxVolume (a Portworx Volume resource)",
        (("VolumeID", "volumeID", "s"),),
    ),
    "scaleIO": (
        "ScaleIO (a persistent volume backed by a block device in ScaleIO)",
        (
            ("Gateway", "gateway", "s"),
            ("System", "system", "s"),
            ("Protection Domain", "protectionDomain", "s"),
            ("Storage Pool", "storagePool", "s"),
            ("Storage Mode", "storageMode", "s"),
            ("VolumeName", "volumeName", "s"),
            ("FSType", "fsType", "s"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "cephfs": (
        "CephFS (a CephFS mount on the host that shares a pod's lifetime)",
        (
            ("Monitors", "monitors", "l"),
            ("Path", "path", "s"),
            ("User", "user", "s"),
            ("SecretFile", "secretFile", "s"),
            ("SecretRef", "secretRef", "r"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "storageos": (
        "StorageOS (a StorageOS Persistent Disk resource)",
        (
            ("VolumeName", "volumeName", "s"),
            ("VolumeNamespace", "volumeNamespace", "s"),
            ("FSType", "fsType", "s"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "azureFile": (
        "AzureFile (an Azure File Service mount on the host and bind mount to the pod)",
        (
            ("SecretName", "secretName", "s"),
            ("ShareName", "shareName", "s"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "flexVolume": (
        "FlexVolume (a generic volume resource that is provisioned/attached using an exec based "
        "plugin)",
        (
            ("Driver", "driver", "s"),
            ("FSType", "fsType", "s"),
            ("SecretRef", "secretRef", "r"),
            ("ReadOnly", "readOnly", "b"),
            ("Options", "options", "m"),
        ),
    ),
    "flocker": (
        "Flocker (a Flocker volume mounted by the Flocker agent)",
        (("DatasetName", "datasetName", "s"), ("DatasetUUID", "datasetUUID", "s")),
    ),
    "image": (
        "Image (a container image or OCI artifact)",
        (("Reference", "reference", "s"), ("PullPolicy", "pullPolicy", "s")),
    ),
}


def _other_volume_lines(volume: Json) -> list[str]:
    """The volume sources printed from a table (_VOLUME_PRINTERS), and the three whose lines
    need more than a field each (iSCSI, Fibre Channel, Azure Disk); ``<unknown>`` else."""
    if isinstance(volume.get("iscsi"), Mapping):
        iscsi = as_map(volume["iscsi"])
        initiator = iscsi.get("initiatorName")
        return [
            "    Type:\tISCSI (an ISCSI Disk resource that is attached to a kubelet's host "
            "machine and then exposed to the pod)",
            f"    TargetPortal:\t{as_str(iscsi.get('targetPortal'))}",
            f"    IQN:\t{as_str(iscsi.get('iqn'))}",
            f"    Lun:\t{as_int(iscsi.get('lun'))}",
            # kubectl's own line has no colon here.
            f"    ISCSIInterface\t{as_str(iscsi.get('iscsiInterface'))}",
            f"    FSType:\t{as_str(iscsi.get('fsType'))}",
            f"    ReadOnly:\t{go_value(iscsi.get('readOnly'), 'b')}",
            f"    Portals:\t{go_value(iscsi.get('portals'), 'l')}",
            f"    DiscoveryCHAPAuth:\t{go_value(iscsi.get('chapAuthDiscovery'), 'b')}",
            f"    SessionCHAPAuth:\t{go_value(iscsi.get('chapAuthSession'), 'b')}",
            f"    SecretRef:\t{go_value(iscsi.get('secretRef'), 'r')}",
            f"    InitiatorName:\t{as_str(initiator) if isinstance(initiator, str) else '<none>'}",
        ]
    if isinstance(volume.get("fc"), Mapping):
        fc = as_map(volume["fc"])
        lun = opt_int(fc.get("lun"))
        return [
            "    Type:\tFC (a Fibre Channel disk)",
            f"    TargetWWNs:\t{', '.join(str(w) for w in seq(fc.get('targetWWNs')))}",
            f"    LUN:\t{'<none>' if lun is None else lun}",
            f"    FSType:\t{as_str(fc.get('fsType'))}",
            f"    ReadOnly:\t{go_value(fc.get('readOnly'), 'b')}",
        ]
    if isinstance(volume.get("azureDisk"), Mapping):
        disk = as_map(volume["azureDisk"])
        return [
            "    Type:\tAzureDisk (an Azure Data Disk mount on the host and bind mount to the pod)",
            f"    DiskName:\t{as_str(disk.get('diskName'))}",
            f"    DiskURI:\t{as_str(disk.get('diskURI'))}",
            f"    Kind: \t{as_str(disk.get('kind'))}",
            f"    FSType:\t{as_str(disk.get('fsType'))}",
            f"    CachingMode:\t{as_str(disk.get('cachingMode'))}",
            f"    ReadOnly:\t{go_value(disk.get('readOnly'), 'b')}",
        ]
    for key, (kind, fields) in _VOLUME_PRINTERS.items():
        if isinstance(volume.get(key), Mapping):
            source = as_map(volume[key])
            return [f"    Type:\t{kind}"] + [
                f"    {label}:\t{go_value(source.get(field), how)}" for label, field, how in fields
            ]
    return ["  <unknown>"]


def _projected_lines(projected: Json) -> list[str]:
    """printProjectedVolumeSource: secrets and config maps with ``Optional`` (false when unset,
    since kubectl 1.33), the downward API, token expiry. ClusterTrustBundle and PodCertificate
    sources have no line in kubectl."""
    lines = ["    Type:\tProjected (a volume that contains injected data from multiple sources)"]
    for source in maps(projected.get("sources")):
        if isinstance(source.get("secret"), Mapping):
            secret = as_map(source["secret"])
            lines.append(f"    SecretName:\t{as_str(secret.get('name'))}")
            lines.append(f"    Optional:\t{go_value(secret.get('optional'), 'b')}")
        elif isinstance(source.get("downwardAPI"), Mapping):
            lines.append("    DownwardAPI:\ttrue")
        elif isinstance(source.get("configMap"), Mapping):
            config = as_map(source["configMap"])
            lines.append(f"    ConfigMapName:\t{as_str(config.get('name'))}")
            lines.append(f"    Optional:\t{go_value(config.get('optional'), 'b')}")
        elif isinstance(source.get("serviceAccountToken"), Mapping):
            token = as_map(source["serviceAccountToken"])
            lines.append(f"    TokenExpirationSeconds:\t{as_int(token.get('expirationSeconds'))}")
    return lines


def _nested_pairs(title: str, items: Mapping[str, str], sep: str = "=") -> list[str]:
    """printLabelsMultiline / printAnnotationsMultiline (``sep`` ``: ``) through kubectl's
    nested prefix writer, which puts 4 spaces before every write."""
    if not items:
        return [f"    {title}:\t    <none>"]
    return [
        (f"    {title}:\t" if i == 0 else "        \t") + f"    {key}{sep}{items[key]}"
        for i, key in enumerate(sorted(items))
    ]


def _ephemeral_lines(ephemeral: Json) -> list[str]:
    lines = [
        "    Type:\tEphemeralVolume (an inline specification for a volume that gets created and "
        "deleted with the pod)"
    ]
    claim = ephemeral.get("volumeClaimTemplate")
    if not isinstance(claim, Mapping):
        return lines
    metadata, spec = as_map(claim.get("metadata")), as_map(claim.get("spec"))
    annotations = {str(k): as_str(v) for k, v in as_map(metadata.get("annotations")).items()}
    labels = {str(k): as_str(v) for k, v in as_map(metadata.get("labels")).items()}
    storage_class = annotations.get("volume.beta.kubernetes.io/storage-class") or as_str(
        spec.get("storageClassName")
    )
    lines += [
        f"    StorageClass:\t{storage_class}",
        f"    Volume:\t{as_str(spec.get('volumeName'))}",
        *_nested_pairs("Labels", labels),
        *_nested_pairs("Annotations", annotations, ": "),
        "    Capacity:\t",
        "    Access Modes:\t",
    ]
    if as_str(spec.get("volumeMode")):
        lines.append(f"    VolumeMode:\t{as_str(spec.get('volumeMode'))}")
    return lines
