"""The torchvision peer of benches/loader.rs: PIL decode + RandomResizedCrop(224) + horizontal
flip + ColorJitter(0.4, 0.4, 0.4, 0.1) + ToTensor + Normalize over the same JPEG folder, in one
process with one thread (one core). Prints `torchvision img/s: X` (median of 3 epochs)."""
import statistics
import sys
import time

import torch
from torchvision import datasets, transforms

torch.set_num_threads(1)
pipeline = transforms.Compose([
    transforms.RandomResizedCrop(224),
    transforms.RandomHorizontalFlip(),
    transforms.ColorJitter(0.4, 0.4, 0.4, 0.1),
    transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])
folder = datasets.ImageFolder(sys.argv[1], transform=pipeline)
loader = torch.utils.data.DataLoader(folder, batch_size=32, shuffle=True, num_workers=0)
rates = []
for _ in range(3):
    start, n = time.perf_counter(), 0
    for images, _ in loader:
        n += images.shape[0]
    rates.append(n / (time.perf_counter() - start))
print(f"torchvision img/s: {statistics.median(rates):.1f}")
