# An independent verifier of a CrowNest attestation (Python's cryptography):
#   python3 verify-dsse.py BUNDLE.json PUBLIC_KEY.pem  -> prints the subject's sha256
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
bundle, key = json.load(open(sys.argv[1])), serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
keyid = hashlib.sha256(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
env, sig = bundle["dsseEnvelope"], bundle["dsseEnvelope"]["signatures"][0]
assert sig["keyid"] == keyid == bundle["verificationMaterial"]["publicKey"]["hint"], "not signed by this key"
body, ptype = base64.b64decode(env["payload"]), env["payloadType"].encode()
key.verify(base64.b64decode(sig["sig"]), b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body), ec.ECDSA(hashes.SHA256()))
print(json.loads(body)["subject"][0]["digest"]["sha256"])
