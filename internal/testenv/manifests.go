package testenv

// ScoredManifest is a Deployment and a Service with findings in most of
// kube-score's checks (no limits, a :latest image, no probes, a selector
// that matches no pod), for tests that run kube-score.
const ScoredManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:latest
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: other}
  ports:
  - port: 80
`
