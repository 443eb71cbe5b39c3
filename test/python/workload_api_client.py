#!/usr/bin/python3
"""A SPIFFE workload we did not write: Python's grpcio, with stubs generated at run time by
grpc_tools.protoc from the official workload.proto (../shared/conformance/spiffe-workload-api/),
calling a Workload API endpoint as any workload would. Used by test/workload-api-python.test.ts.

    workload_api_client.py PROTO SOCKET x509 OUTDIR   first FetchX509SVID message: the chain and
                                                       bundle as PEM files in OUTDIR, the key checked
    workload_api_client.py PROTO SOCKET jwt AUDIENCE   FetchJWTSVID, checked with PyJWT against the
                                                       first FetchJWTBundles message
    workload_api_client.py PROTO SOCKET validate AUDIENCE TOKEN
    workload_api_client.py PROTO SOCKET bare            FetchJWTSVID without the security header

Prints one JSON object; a gRPC error prints {"error": CODE_NAME, "details": ...}.
"""
import base64
import json
import os
import sys
import tempfile

import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_tools import protoc

HEADER = (("workload.spiffe.io", "true"),)


def load_stubs(proto):
    out = tempfile.mkdtemp(prefix="aztp-py-stubs-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        [
            "protoc",
            f"-I{os.path.dirname(proto)}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.basename(proto),
        ]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed on {proto}: {rc}")
    sys.path.insert(0, out)
    import workload_pb2
    import workload_pb2_grpc

    return workload_pb2, workload_pb2_grpc


def split_der(data):
    """Concatenated DER certificates, one by one (each a SEQUENCE with a definite length)."""
    certs = []
    i = 0
    while i < len(data):
        if data[i] != 0x30:
            raise ValueError(f"no DER SEQUENCE at byte {i}")
        first = data[i + 1]
        if first < 0x80:
            length, head = first, 2
        else:
            n = first & 0x7F
            length, head = int.from_bytes(data[i + 2 : i + 2 + n], "big"), 2 + n
        certs.append(x509.load_der_x509_certificate(bytes(data[i : i + head + length])))
        i += head + length
    return certs


def pem(certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def uri_sans(cert):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ext.value.get_values_for_type(x509.UniformResourceIdentifier)


def main():
    proto, socket, op, *args = sys.argv[1:]
    pb, rpc = load_stubs(proto)
    channel = grpc.insecure_channel(f"unix://{socket}")
    stub = rpc.SpiffeWorkloadAPIStub(channel)
    try:
        if op == "x509":
            (outdir,) = args
            stream = stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=HEADER, timeout=20)
            first = next(stream)
            stream.cancel()
            svids = []
            for i, svid in enumerate(first.svids):
                chain = split_der(svid.x509_svid)
                bundle = split_der(svid.bundle)
                key = serialization.load_der_private_key(svid.x509_svid_key, password=None)
                leaf_key = chain[0].public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                own_key = key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                for name, certs in (("leaf", chain[:1]), ("intermediates", chain[1:]), ("bundle", bundle)):
                    with open(os.path.join(outdir, f"{i}-{name}.pem"), "wb") as f:
                        f.write(pem(certs))
                svids.append(
                    {
                        "spiffe_id": svid.spiffe_id,
                        "hint": svid.hint,
                        "chain_length": len(chain),
                        "uri_sans": uri_sans(chain[0]),
                        "key_matches_leaf": leaf_key == own_key,
                    }
                )
            print(json.dumps({"svids": svids, "federated": sorted(first.federated_bundles.keys())}))
        elif op == "jwt":
            (audience,) = args
            res = stub.FetchJWTSVID(pb.JWTSVIDRequest(audience=[audience]), metadata=HEADER, timeout=20)
            stream = stub.FetchJWTBundles(pb.JWTBundlesRequest(), metadata=HEADER, timeout=20)
            bundles = next(stream).bundles
            stream.cancel()
            out = []
            for svid in res.svids:
                header = jwt.get_unverified_header(svid.svid)
                td = "spiffe://" + svid.spiffe_id.split("/")[2]
                keys = json.loads(bundles[td])["keys"]
                jwk = next(k for k in keys if k.get("kid") == header["kid"])
                key = jwt.PyJWK(jwk)
                claims = jwt.decode(svid.svid, key.key, algorithms=[header["alg"]], audience=audience)
                out.append({"spiffe_id": svid.spiffe_id, "hint": svid.hint, "claims": claims, "token": svid.svid})
            print(json.dumps({"svids": out}))
        elif op == "validate":
            audience, token = args
            res = stub.ValidateJWTSVID(pb.ValidateJWTSVIDRequest(audience=audience, svid=token), metadata=HEADER, timeout=20)
            from google.protobuf.json_format import MessageToDict

            print(json.dumps({"spiffe_id": res.spiffe_id, "claims": MessageToDict(res.claims)}))
        elif op == "bare":
            stub.FetchJWTSVID(pb.JWTSVIDRequest(audience=["x"]), timeout=20)
            print(json.dumps({"unexpected": "answered"}))
        else:
            raise SystemExit(f"unknown operation {op}")
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "details": e.details()}))


if __name__ == "__main__":
    main()
